import { FailureReason, stowHttpStatus, stowResponseDataset, type PartOutcome } from '../../src/dicomweb/stow-response';
import { bodyFraming } from '../../src/dicomweb/stow-body';
import { HttpError } from '../../src/server/errors';

const stored: PartOutcome = { kind: 'stored', sopClassUid: '1.2.1', sopInstanceUid: '1.2.3', studyUid: '1.2', seriesUid: '1.2.2' };
const failure = (reason: number): PartOutcome => ({ kind: 'failed', reason, message: 'x' });

describe('stowHttpStatus (PS3.18 Table 10.5.3-1)', () => {
  it.each<[string, PartOutcome[], number]>([
    ['all stored', [stored, stored], 200],
    ['some failed', [stored, failure(FailureReason.CannotUnderstand)], 202],
    ['none stored, bad syntax only', [failure(FailureReason.CannotUnderstand)], 400],
    ['none stored, study mismatch', [failure(FailureReason.ProcessingFailure)], 409],
    ['none stored, out of resources', [failure(FailureReason.OutOfResources)], 409],
    ['none stored, a mixture of reasons', [failure(FailureReason.CannotUnderstand), failure(FailureReason.DataSetMismatch)], 409],
  ])('%s → %d', (_, outcomes, status) => {
    expect(stowHttpStatus(outcomes)).toBe(status);
  });
});

describe('stowResponseDataset', () => {
  it('writes the module in tag order, with a Type 2 RetrieveURL and only non-empty sequences', () => {
    const dataset = stowResponseDataset([stored, { ...failure(0xa700), sopInstanceUid: '9.9' }], 'http://h/dw/');
    expect(Object.keys(dataset)).toEqual(['00080005', '00081190', '00081198', '00081199']);
    expect(dataset['00081190']).toEqual({ vr: 'UR', Value: ['http://h/dw/studies/1.2'] });
    expect(dataset['00081198'].Value).toEqual([{ '00081155': { vr: 'UI', Value: ['9.9'] }, '00081197': { vr: 'US', Value: [0xa700] } }]);
    expect(stowResponseDataset([failure(0xc000)], 'http://h/dw/')['00081190']).toEqual({ vr: 'UR' });
    expect(stowResponseDataset([stored], 'http://h/dw/')['00081198']).toBeUndefined();
  });
});

describe('bodyFraming', () => {
  it.each([
    ['multipart/related; type="application/dicom"; boundary="a b"', { kind: 'related', boundary: 'a b' }],
    ['multipart/related;boundary=xyz;type=application/DICOM', { kind: 'related', boundary: 'xyz' }],
    ['multipart/related; boundary=xyz', { kind: 'related', boundary: 'xyz' }],
    ['multipart/form-data; boundary=----x', { kind: 'form-data' }],
    ['application/dicom; transfer-syntax=1.2.840.10008.1.2', { kind: 'single', part: { mediaType: 'application/dicom', transferSyntax: '1.2.840.10008.1.2' } }],
  ])('%s', (header, framing) => {
    expect(bodyFraming(header)).toEqual(framing);
  });

  it.each([
    [undefined, 415],
    ['text/plain', 415],
    ['multipart/related; type="application/dicom+xml"; boundary=x', 415],
    ['multipart/related; type="application/dicom"', 400],
    ['multipart/form-data', 400],
  ])('refuses %s with %d', (header, status) => {
    let caught: unknown;
    try {
      bodyFraming(header);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(HttpError);
    expect((caught as HttpError).status).toBe(status);
  });
});
