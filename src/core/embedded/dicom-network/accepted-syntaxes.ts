/**
 * The transfer syntaxes the DICOM server accepts for C-STORE ("AcceptedTransferSyntaxes", and
 * GET/PUT /tools/accepted-transfer-syntaxes): patterns with `*` and `?` over the syntaxes Orthanc knows.
 * Files are stored as received, so any of them can be accepted: the core reads the header of every syntax.
 */

/** The transfer syntaxes Orthanc 1.10 knows, in its order (GET /tools/accepted-transfer-syntaxes with "*"). */
const KNOWN_SYNTAXES: readonly string[] = [
  '1.2.840.10008.1.2', '1.2.840.10008.1.2.1', '1.2.840.10008.1.2.1.99', '1.2.840.10008.1.2.2',
  ...[50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 70, 80, 81, 90, 91, 92, 93, 94, 95].map((n) => `1.2.840.10008.1.2.4.${n}`),
  ...[100, 101, 102, 103, 104, 105, 106, 107, 108].map((n) => `1.2.840.10008.1.2.4.${n}`),
  '1.2.840.10008.1.2.5', '1.2.840.10008.1.2.6.1', '1.2.840.10008.1.2.6.2',
];

/** Orthanc's default: every syntax. */
export const ALL_SYNTAXES_PATTERN = '1.2.840.10008.1.*';

function matcher(pattern: string): RegExp {
  const body = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

export class AcceptedSyntaxes {
  private accepted: ReadonlySet<string> = new Set();

  constructor(patterns: readonly string[]) {
    this.set(patterns);
  }

  /** Replaces the accepted syntaxes by those the patterns match. */
  set(patterns: readonly string[]): void {
    const regexps = patterns.map(matcher);
    this.accepted = new Set(KNOWN_SYNTAXES.filter((uid) => regexps.some((regexp) => regexp.test(uid))));
  }

  list(): string[] {
    return KNOWN_SYNTAXES.filter((uid) => this.accepted.has(uid));
  }

  has(uid: string): boolean {
    return this.accepted.has(uid);
  }
}
