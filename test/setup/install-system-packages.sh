#!/usr/bin/env bash
# Installs the Debian packages the test suite drives for real (npm's "pretest" runs this):
# Orthanc and its DICOMweb plugin (remote core, reference to diff against), and DCMTK (storescu, findscu,
# echoscu, storescp: real DICOM peers for the /modalities and DICOM server tests), and Chromium (the OHIF
# viewer e2e test drives it with playwright-core, which brings no browser of its own).
# Does nothing when they are already there; needs root (or sudo) otherwise.
set -euo pipefail

missing=()
command -v Orthanc >/dev/null 2>&1 || [ -x /usr/sbin/Orthanc ] || missing+=(orthanc)
[ -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || missing+=(orthanc-dicomweb)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v storescu >/dev/null 2>&1 || missing+=(dcmtk)

[ ${#missing[@]} -eq 0 ] && exit 0

echo "Installing Debian packages for the tests: ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "Run as root: apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
