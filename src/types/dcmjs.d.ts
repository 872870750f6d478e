/**
 * Minimal ambient types for dcmjs (the package ships none). Only what the project uses is declared;
 * add members here when you need more. Shapes follow dcmjs 0.51 (build/dcmjs.js).
 */
declare module 'dcmjs' {
  export namespace data {
    /** One element of a denaturalized dataset (DICOM JSON-like, keyed by 8-hex-digit tag "GGGGEEEE"). */
    interface DicomElement {
      vr: string;
      /** Strings, numbers, PN objects ({ Alphabetic }), nested datasets (SQ) or ArrayBuffers (binary VRs). */
      Value?: unknown[];
      InlineBinary?: string;
      BulkDataURI?: string;
      _rawValue?: unknown;
    }

    /** A denaturalized dataset: tag "GGGGEEEE" (upper-case hex) -> element. */
    type DicomDataset = Record<string, DicomElement>;

    /**
     * A naturalized dataset: keyword -> value (single values unwrapped, sequences as arrays of
     * naturalized datasets, binary values as ArrayBuffer[]). `_vrMap` forces a VR for a keyword
     * (e.g. `{ PixelData: 'OW' }`), `_meta` carries the file meta group after naturalizeDataset.
     */
    type NaturalizedDataset = {
      _vrMap?: Record<string, string>;
      _meta?: Record<string, unknown>;
      [keyword: string]: unknown;
    };

    interface ReadOptions {
      ignoreErrors?: boolean;
      untilTag?: string | null;
      includeUntilTagValue?: boolean;
      /** Do not copy the input buffer: values may alias it. */
      noCopy?: boolean;
      forceStoreRaw?: boolean;
    }

    interface WriteOptions {
      allowInvalidVRLength?: boolean;
      /** Split encapsulated frames into 20 KiB fragments (dcmjs default: true). */
      fragmentMultiframe?: boolean;
    }

    interface DictionaryEntry {
      tag: string;
      vr: string;
      vm: string;
      name: string;
      version: string;
    }

    class DicomDict {
      constructor(meta: DicomDataset);
      meta: DicomDataset;
      dict: DicomDataset;
      upsertTag(tag: string, vr: string, values: unknown[]): void;
      /** Part 10 bytes: preamble, "DICM", meta group (explicit LE), dataset in meta's TransferSyntaxUID. */
      write(options?: WriteOptions): ArrayBuffer;
    }

    class DicomMessage {
      /** Parses a Part 10 file (deflated datasets are inflated). */
      static readFile(buffer: ArrayBufferLike, options?: ReadOptions): DicomDict;
      static isEncapsulated(transferSyntaxUid: string): boolean;
    }

    class DicomMetaDictionary {
      static naturalizeDataset(dataset: DicomDataset): NaturalizedDataset;
      static denaturalizeDataset(dataset: NaturalizedDataset): DicomDataset;
      static denaturalizeValue(value: unknown): unknown[];
      static namifyDataset(dataset: DicomDataset): Record<string, unknown>;
      static cleanDataset(dataset: Record<string, unknown>): DicomDataset;
      /** "(0010,0010)" <-> "00100010". */
      static punctuateTag(rawTag: string): string;
      static unpunctuateTag(tag: string): string;
      static uid(): string;
      static date(): string;
      static time(): string;
      static dateTime(): string;
      /** Keyed by punctuated tag "(GGGG,EEEE)". */
      static dictionary: Record<string, DictionaryEntry>;
      /** Keyed by keyword, e.g. "PatientName". */
      static nameMap: Record<string, DictionaryEntry>;
      static sopClassNamesByUID: Record<string, string>;
      static sopClassUIDsByName: Record<string, string>;
    }
  }

  /** dcmjs's loglevel logger (default level "warn"); validation messages use getLogger('validation.dcmjs'). */
  interface Logger {
    setLevel(level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'silent' | number): void;
    getLevel(): number;
    getLogger(name: string): Logger;
  }
  export const log: Logger;
}
