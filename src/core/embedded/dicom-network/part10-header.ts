/**
 * The Part 10 preamble and file meta information group, written in front of the data set bytes a C-STORE
 * carries: the instance is then stored byte for byte as received, in the transfer syntax it was sent in.
 */

const IMPLEMENTATION_CLASS_UID = '1.2.826.0.1.3680043.10.1338.1';
const IMPLEMENTATION_VERSION = 'DICOMWEB_GW_1';

/** Even-length value padded with NUL (UI) or space (other string VRs), as PS3.5 requires. */
function padded(value: string, vr: string): Buffer {
  const bytes = Buffer.from(value, 'latin1');
  if (bytes.length % 2 === 0) return bytes;
  return Buffer.concat([bytes, Buffer.from([vr === 'UI' ? 0 : 0x20])]);
}

/** One explicit VR little endian element with a 2-byte length (all meta elements but OB). */
function shortElement(element: number, vr: string, value: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt16LE(0x0002, 0);
  head.writeUInt16LE(element, 2);
  head.write(vr, 4, 'latin1');
  head.writeUInt16LE(value.length, 6);
  return Buffer.concat([head, value]);
}

export interface MetaInformation {
  sopClassUid: string;
  sopInstanceUid: string;
  transferSyntaxUid: string;
  sourceAet?: string;
}

export function part10Header(meta: MetaInformation): Buffer {
  const version = Buffer.alloc(14);
  version.writeUInt16LE(0x0002, 0);
  version.writeUInt16LE(0x0001, 2);
  version.write('OB', 4, 'latin1');
  version.writeUInt32LE(2, 8);
  version[13] = 1; // FileMetaInformationVersion 00\01
  const elements = Buffer.concat([
    version,
    shortElement(0x0002, 'UI', padded(meta.sopClassUid, 'UI')),
    shortElement(0x0003, 'UI', padded(meta.sopInstanceUid, 'UI')),
    shortElement(0x0010, 'UI', padded(meta.transferSyntaxUid, 'UI')),
    shortElement(0x0012, 'UI', padded(IMPLEMENTATION_CLASS_UID, 'UI')),
    shortElement(0x0013, 'SH', padded(IMPLEMENTATION_VERSION, 'SH')),
    ...(meta.sourceAet ? [shortElement(0x0016, 'AE', padded(meta.sourceAet, 'AE'))] : []),
  ]);
  const groupLength = Buffer.alloc(12);
  groupLength.writeUInt16LE(0x0002, 0);
  groupLength.writeUInt16LE(0x0000, 2);
  groupLength.write('UL', 4, 'latin1');
  groupLength.writeUInt16LE(4, 6);
  groupLength.writeUInt32LE(elements.length, 8);
  const preamble = Buffer.alloc(132);
  preamble.write('DICM', 128, 'latin1');
  return Buffer.concat([preamble, groupLength, elements]);
}
