/**
 * Transfer syntaxes as the WADO-RS layer needs them: how each one is encoded (byte order, explicit VR,
 * encapsulated pixel data) and which media type carries its frames (PS3.18 Table 8.7.3-5).
 */

export const TS = {
  ImplicitVRLittleEndian: '1.2.840.10008.1.2',
  ExplicitVRLittleEndian: '1.2.840.10008.1.2.1',
  EncapsulatedUncompressed: '1.2.840.10008.1.2.1.98',
  DeflatedExplicitVRLittleEndian: '1.2.840.10008.1.2.1.99',
  ExplicitVRBigEndian: '1.2.840.10008.1.2.2',
  JPEGBaseline8Bit: '1.2.840.10008.1.2.4.50',
  JPEGExtended12Bit: '1.2.840.10008.1.2.4.51',
  JPEGLossless: '1.2.840.10008.1.2.4.57',
  JPEGLosslessSV1: '1.2.840.10008.1.2.4.70',
  JPEGLSLossless: '1.2.840.10008.1.2.4.80',
  JPEGLSNearLossless: '1.2.840.10008.1.2.4.81',
  JPEG2000Lossless: '1.2.840.10008.1.2.4.90',
  JPEG2000: '1.2.840.10008.1.2.4.91',
  JPEG2000MCLossless: '1.2.840.10008.1.2.4.92',
  JPEG2000MC: '1.2.840.10008.1.2.4.93',
  HTJ2KLossless: '1.2.840.10008.1.2.4.201',
  HTJ2KLosslessRPCL: '1.2.840.10008.1.2.4.202',
  HTJ2K: '1.2.840.10008.1.2.4.203',
  RLELossless: '1.2.840.10008.1.2.5',
} as const;

/** What PS3.18 calls the default for instances, metadata base64 and uncompressed bulk data. */
export const DEFAULT_TRANSFER_SYNTAX = TS.ExplicitVRLittleEndian;

export interface TransferSyntaxEncoding {
  littleEndian: boolean;
  explicitVr: boolean;
  /** The data set after the file meta group is deflated (PS3.5 A.5). */
  deflated: boolean;
  /** Pixel Data is a sequence of fragments (PS3.5 A.4). */
  encapsulated: boolean;
}

const NATIVE_SYNTAXES: ReadonlySet<string> = new Set([
  TS.ImplicitVRLittleEndian,
  TS.ExplicitVRLittleEndian,
  TS.DeflatedExplicitVRLittleEndian,
  TS.ExplicitVRBigEndian,
]);

/** How a transfer syntax encodes a data set. Unknown UIDs are explicit LE, encapsulated (every private or newer syntax is). */
export function encodingOf(transferSyntax: string): TransferSyntaxEncoding {
  return {
    littleEndian: transferSyntax !== TS.ExplicitVRBigEndian,
    explicitVr: transferSyntax !== TS.ImplicitVRLittleEndian,
    deflated: transferSyntax === TS.DeflatedExplicitVRLittleEndian,
    encapsulated: !NATIVE_SYNTAXES.has(transferSyntax),
  };
}

export function isEncapsulated(transferSyntax: string): boolean {
  return !NATIVE_SYNTAXES.has(transferSyntax);
}

/** The media type of one frame in this syntax (PS3.18 Table 8.7.3-5), undefined when none is defined. */
const FRAME_MEDIA_TYPES: Readonly<Record<string, string>> = {
  [TS.JPEGBaseline8Bit]: 'image/jpeg',
  [TS.JPEGExtended12Bit]: 'image/jpeg',
  [TS.JPEGLossless]: 'image/jpeg',
  [TS.JPEGLosslessSV1]: 'image/jpeg',
  [TS.JPEGLSLossless]: 'image/jls',
  [TS.JPEGLSNearLossless]: 'image/jls',
  [TS.JPEG2000Lossless]: 'image/jp2',
  [TS.JPEG2000]: 'image/jp2',
  [TS.JPEG2000MCLossless]: 'image/jpx',
  [TS.JPEG2000MC]: 'image/jpx',
  [TS.HTJ2KLossless]: 'image/jphc',
  [TS.HTJ2KLosslessRPCL]: 'image/jphc',
  [TS.HTJ2K]: 'image/jphc',
  [TS.RLELossless]: 'image/dicom-rle',
};

export function frameMediaType(transferSyntax: string): string | undefined {
  if (!isEncapsulated(transferSyntax)) return 'application/octet-stream';
  return FRAME_MEDIA_TYPES[transferSyntax];
}
