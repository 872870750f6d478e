import { Router, type RequestHandler } from 'express';
import { getDefaultEncoding, orthancEncodingName, setDefaultEncoding } from '../../../dicom/charset';
import { generateUid, isUidLevel, dicomDateTime } from '../../../dicom/create-dicom';
import { HttpError } from '../../../server/errors';
import { getVerbosity, LOG_CATEGORIES, setVerbosity, VERBOSITIES, type Verbosity } from '../../../server/logger';
import { anyBodyAsText } from './tools';

/** The answer Orthanc gives to a method a URI does not have: 405 with the allowed ones. */
function methodNotAllowed(allow: string): RequestHandler {
  return (req) => {
    throw new HttpError(405, `${req.method} is not allowed here`, `Allowed: ${allow}`, { Allow: allow });
  };
}

function bodyText(body: unknown): string {
  return typeof body === 'string' ? body : '';
}

function parseVerbosity(text: string): Verbosity {
  if (!(VERBOSITIES as readonly string[]).includes(text)) {
    throw new HttpError(400, 'Parameter out of range', `Verbosity can be "default", "verbose" or "trace": ${text}`);
  }
  return text as Verbosity;
}

/** Orthanc's compact ISO timestamp (GET /tools/now): "20261123T035404". */
function isoNow(utc: boolean): string {
  const { date, time } = dicomDateTime(new Date(), utc);
  return `${date}T${time.slice(0, 6)}`;
}

/**
 * Written for this gateway (not Orthanc's text): what the embedded core's DICOM server and REST API support.
 * Orthanc answers its own statement here; clients only display it.
 */
const CONFORMANCE_STATEMENT = `DICOM Conformance Statement of the dicomweb-gateway embedded core
=================================================================

DICOM network services (DicomServerEnabled, on DicomPort as DicomAet)
  C-ECHO SCP   Verification SOP Class 1.2.840.10008.1.1
  C-STORE SCP  storage SOP classes (1.2.840.10008.5.1.4.1.1.*), in the native and usual compressed transfer
               syntaxes; instances are stored in the transfer syntax received
  C-FIND SCP   Patient Root and Study Root Query/Retrieve Information Models - FIND
  C-MOVE SCP   Patient Root and Study Root Query/Retrieve Information Models - MOVE
  C-STORE, C-FIND, C-MOVE and C-ECHO SCU towards the modalities of DicomModalities (/modalities)

DICOMweb services (DicomWeb.Root)
  QIDO-RS, WADO-RS (including rendered and thumbnail), STOW-RS and WADO-URI, as described in PS3.18

Character sets
  Text is decoded per Specific Character Set (0008,0005), including ISO 2022 code extensions;
  data sets without it use DefaultEncoding (/tools/default-encoding).
`;

/**
 * Orthanc's small /tools helpers: default-encoding, generate-uid, now, now-local, dicom-conformance,
 * log-level(-category), execute-script (refused: there is no Lua engine), invalidate-tags.
 */
export function toolsSystemRoutes(): Router {
  const router = Router();

  router.get('/tools/default-encoding', (_req, res) => {
    res.type('text/plain').send(getDefaultEncoding());
  });
  router.put('/tools/default-encoding', anyBodyAsText, (req, res) => {
    // Orthanc matches the name case-insensitively, without trimming (" Latin1" is refused)
    const name = orthancEncodingName(bodyText(req.body));
    if (name === undefined) throw new HttpError(400, 'Parameter out of range');
    setDefaultEncoding(name);
    res.type('text/plain').send(name);
  });
  router.all('/tools/default-encoding', methodNotAllowed('GET,PUT'));

  router.get('/tools/generate-uid', (req, res) => {
    const level = req.query.level;
    // Orthanc answers an unknown or missing level with an empty 404
    if (typeof level !== 'string' || !isUidLevel(level)) throw new HttpError(404, 'Unknown resource', 'The "level" argument must be patient, study, series or instance');
    res.type('text/plain').send(generateUid(level));
  });
  router.all('/tools/generate-uid', methodNotAllowed('GET'));

  router.get('/tools/now', (_req, res) => {
    res.type('text/plain').send(isoNow(true));
  });
  router.all('/tools/now', methodNotAllowed('GET'));
  router.get('/tools/now-local', (_req, res) => {
    res.type('text/plain').send(isoNow(false));
  });
  router.all('/tools/now-local', methodNotAllowed('GET'));

  router.get('/tools/dicom-conformance', (_req, res) => {
    res.type('text/plain').send(CONFORMANCE_STATEMENT);
  });
  router.all('/tools/dicom-conformance', methodNotAllowed('GET'));

  router.get('/tools/log-level', (_req, res) => {
    res.type('text/plain').send(getVerbosity());
  });
  router.put('/tools/log-level', anyBodyAsText, (req, res) => {
    setVerbosity(parseVerbosity(bodyText(req.body)));
    res.type('text/plain').send('');
  });
  router.all('/tools/log-level', methodNotAllowed('GET,PUT'));
  for (const category of LOG_CATEGORIES) {
    const path = `/tools/log-level-${category}`;
    router.get(path, (_req, res) => {
      res.type('text/plain').send(getVerbosity(category));
    });
    router.put(path, anyBodyAsText, (req, res) => {
      setVerbosity(parseVerbosity(bodyText(req.body)), category);
      res.type('text/plain').send('');
    });
    router.all(path, methodNotAllowed('GET,PUT'));
  }

  router.post('/tools/execute-script', () => {
    // Orthanc without "ExecuteLuaEnabled" answers 403; this core has no Lua engine at all
    throw new HttpError(403, 'Forbidden access', 'The URI /tools/execute-script is disallowed: there is no Lua engine');
  });
  router.all('/tools/execute-script', methodNotAllowed('POST'));

  router.post('/tools/invalidate-tags', (_req, res) => {
    // Orthanc drops its cached DICOM-as-JSON summaries; the embedded core reads tags from the files, it has none
    res.type('text/plain').send('');
  });
  router.all('/tools/invalidate-tags', methodNotAllowed('POST'));

  return router;
}
