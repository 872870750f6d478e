import * as dcmjs from 'dcmjs';

/** The file meta group of the small files unit tests write with dcmjs (Secondary Capture, Explicit VR Little Endian). */
export const TEST_META: dcmjs.data.DicomDataset = {
  '00020001': { vr: 'OB', Value: [new Uint8Array([0, 1]).buffer] },
  '00020002': { vr: 'UI', Value: ['1.2.840.10008.5.1.4.1.1.7'] },
  '00020003': { vr: 'UI', Value: ['1.2.3.4.5'] },
  '00020010': { vr: 'UI', Value: ['1.2.840.10008.1.2.1'] },
  '00020012': { vr: 'UI', Value: ['1.2.3.4'] },
};

/** dcmjs logs through loglevel; its "validation.dcmjs" child logger ignores the root level. */
export function silenceDcmjs(): void {
  const log = dcmjs.log as unknown as { setLevel(level: string): void; getLogger(name: string): { setLevel(level: string): void } };
  log.setLevel('silent');
  log.getLogger('validation.dcmjs').setLevel('silent');
}
