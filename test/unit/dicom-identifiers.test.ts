import { identifyInstance, parseIdentifiers, scanIdentifiers } from '../../src/dicom/dicom-identifiers';
import { makeInstance, makeNonImage, NATIVE_FACTORY_SYNTAXES, TransferSyntax } from '../helpers/dicom-factory';

const readAll = (file: Buffer) => async (bytes: number) => file.subarray(0, bytes);

describe('scanIdentifiers / identifyInstance', () => {
  it.each(NATIVE_FACTORY_SYNTAXES)('reads the same identifiers as dcmjs in %s', async (syntax) => {
    const file = makeInstance({ transferSyntax: syntax, seed: `ids-${syntax}` });
    const expected = parseIdentifiers(file);
    expect(expected.sopInstanceUid).toMatch(/^2\.25\./);
    expect(await identifyInstance(file.subarray(0, 4096), file.length, readAll(file))).toEqual(expected);
  });

  it.each([TransferSyntax.ExplicitVRLittleEndian, TransferSyntax.ImplicitVRLittleEndian])(
    'takes the fast path in %s, skipping nested sequences before group 0020',
    (syntax) => {
      const code = { '00080100': { vr: 'SH', Value: ['T-1'] }, '00080102': { vr: 'SH', Value: ['99X'] } };
      const nested = {
        '00081150': { vr: 'UI', Value: ['1.2.3'] },
        '00081155': { vr: 'UI', Value: ['1.2.3.4'] },
        '0040A170': { vr: 'SQ', Value: [code, code] },
      };
      const file = makeInstance({
        seed: `nested-${syntax}`,
        transferSyntax: syntax,
        extraElements: { '00081032': { vr: 'SQ', Value: [code] }, '00081140': { vr: 'SQ', Value: [nested, nested] } },
      });
      const scanned = scanIdentifiers(file);
      expect(scanned).not.toBe('unknown');
      expect(scanned).toEqual(parseIdentifiers(file));
      const sr = makeNonImage({ kind: 'sr', seed: 'sr', transferSyntax: syntax });
      expect(scanIdentifiers(sr, true)).toEqual(parseIdentifiers(sr));
    },
  );

  it('asks dcmjs for big endian and deflated files', () => {
    expect(scanIdentifiers(makeInstance({ transferSyntax: TransferSyntax.ExplicitVRBigEndian }))).toBe('unknown');
    expect(scanIdentifiers(makeInstance({ transferSyntax: TransferSyntax.DeflatedExplicitVRLittleEndian }))).toBe('unknown');
  });

  it('says "unknown" for a head cut before the series UID, and reads the rest of the file then', async () => {
    const file = makeInstance({ seed: 'cut', StudyDescription: 'x'.repeat(2000) });
    const cut = file.subarray(0, 600);
    expect(scanIdentifiers(cut)).toBe('unknown');
    const more = jest.fn(readAll(file));
    expect(await identifyInstance(cut, file.length, more)).toEqual(parseIdentifiers(file));
    expect(more).toHaveBeenCalled();
  });

  it('refuses what is not DICOM', async () => {
    expect(scanIdentifiers(Buffer.from('hello'))).toBe('not-dicom');
    await expect(identifyInstance(Buffer.alloc(300), 300, readAll(Buffer.alloc(300)))).rejects.toThrow(/DICM/);
  });

  it('reports absent UIDs as undefined instead of inventing them', async () => {
    const file = makeInstance({ seed: 'nouid', extraElements: { '0020000E': { vr: 'UI', Value: [] } } });
    const ids = await identifyInstance(file, file.length, readAll(file));
    expect(ids.seriesUid).toBeUndefined();
    expect(ids.sopInstanceUid).toBeDefined();
  });
});
