/**
 * Media types and HTTP Accept negotiation for DICOMweb (DICOM PS3.18 §8.7, RFC 7231 §5.3).
 *
 * A route describes what it can produce as a list of offers (media type, for multipart/related the
 * part type, and the transfer syntaxes it can encode); negotiateMediaType() matches them against the
 * Accept header (and the optional `accept` query parameter) and returns the selection, a 406 list,
 * or "malformed" (→ 400).
 */

/** A parsed media type: `type` is "type/subtype" in lower case, parameter names are lower case. */
export interface ParsedMediaType {
  type: string;
  params: Record<string, string>;
}

/** One element of an Accept header. `q` is removed from `params`. */
export interface MediaRange extends ParsedMediaType {
  q: number;
  /** Position in the header (0-based), used to break ties in the client's favour. */
  index: number;
}

export interface ParsedAccept {
  ranges: MediaRange[];
  /** Elements that could not be parsed; PS3.18 §8.7.7 says to ignore them. */
  invalid: string[];
}

/** Something a route can produce. List offers in preference order: the first is the default. */
export interface MediaOffer {
  /** e.g. "application/dicom+json", "image/jpeg" or "multipart/related" */
  readonly mediaType: string;
  /** For multipart/related: the media type of the parts, e.g. "application/dicom". */
  readonly partType?: string;
  /** Transfer syntaxes the route can encode. Absent: the transfer-syntax parameter does not apply. */
  readonly transferSyntaxes?: readonly string[];
  /** Used when the client names none; defaults to transferSyntaxes[0]. */
  readonly defaultTransferSyntax?: string;
  /** Whether `transfer-syntax=*` ("as stored") is accepted; default true when transferSyntaxes is given. */
  readonly anyTransferSyntax?: boolean;
}

export interface MediaSelection {
  kind: 'selected';
  offer: MediaOffer;
  mediaType: string;
  partType?: string;
  /** A transfer syntax UID, "*" (any: send as stored), or undefined when the offer has none. */
  transferSyntax?: string;
  q: number;
  /** Which input decided: the `accept` query parameter or the Accept header. */
  source: 'query' | 'header';
}

export interface NotAcceptable {
  kind: 'not-acceptable';
  message: string;
  /** Everything the route offers, formatted as media types (for the 406 body). */
  offered: string[];
}

export interface MalformedAccept {
  kind: 'malformed';
  message: string;
}

export type NegotiationResult = MediaSelection | NotAcceptable | MalformedAccept;

export interface NegotiateOptions {
  /** Value of the `accept` query parameter (PS3.18 §8.3.3.1); it takes precedence over the header. */
  acceptQuery?: string;
  /**
   * PS3.18 §8.7.7 requires 406 when the Accept header is missing. Many HTTP clients send none, and the
   * reference plugin answers with the default, so by default a missing header counts as `*\/*`.
   */
  requireAccept?: boolean;
}

const TCHAR = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

function isWhitespace(c: string | undefined): boolean {
  return c === ' ' || c === '\t';
}

function skipWhitespace(text: string, pos: number): number {
  while (isWhitespace(text[pos])) pos++;
  return pos;
}

/** Reads a token made of RFC 7230 tchars starting at pos. */
function readToken(text: string, pos: number): { token: string; end: number } {
  let end = pos;
  while (end < text.length && TCHAR.test(text[end])) end++;
  return { token: text.slice(pos, end), end };
}

/**
 * Parses one media type with parameters, e.g. `multipart/related; type="application/dicom"`.
 * Lenient where real clients are sloppy: whitespace around `;` and `=`, unquoted values that are not
 * tokens (`type=application/dicom`), a trailing `;`. Returns an error message instead of throwing.
 */
export function parseMediaType(text: string): ParsedMediaType | { error: string } {
  let pos = skipWhitespace(text, 0);
  const main = readToken(text, pos);
  if (main.token === '' || text[main.end] !== '/') return { error: `invalid media type "${text.trim()}"` };
  const sub = readToken(text, main.end + 1);
  if (sub.token === '') return { error: `invalid media type "${text.trim()}"` };
  const params: Record<string, string> = Object.create(null) as Record<string, string>;
  pos = sub.end;
  for (;;) {
    pos = skipWhitespace(text, pos);
    if (pos >= text.length) break;
    if (text[pos] !== ';') return { error: `unexpected "${text[pos]}" in media type "${text.trim()}"` };
    pos = skipWhitespace(text, pos + 1);
    if (pos >= text.length || text[pos] === ';') continue; // empty parameter: tolerated
    const name = readToken(text, pos);
    if (name.token === '') return { error: `invalid parameter name in "${text.trim()}"` };
    pos = skipWhitespace(text, name.end);
    if (text[pos] !== '=') return { error: `parameter "${name.token}" has no value in "${text.trim()}"` };
    pos = skipWhitespace(text, pos + 1);
    let value: string;
    if (text[pos] === '"') {
      const quoted = readQuotedString(text, pos);
      if (quoted === undefined) return { error: `unterminated quoted string in "${text.trim()}"` };
      value = quoted.value;
      pos = quoted.end;
    } else {
      let end = pos;
      while (end < text.length && text[end] !== ';' && text[end] !== '"') end++;
      value = text.slice(pos, end).trim();
      if (value === '') return { error: `parameter "${name.token}" has no value in "${text.trim()}"` };
      pos = end;
    }
    const key = name.token.toLowerCase();
    // RFC 6838 §4.3: a parameter given twice is an error (and would be ambiguous).
    if (key in params) return { error: `parameter "${key}" is given twice in "${text.trim()}"` };
    params[key] = value;
  }
  return { type: `${main.token}/${sub.token}`.toLowerCase(), params };
}

/** Reads a quoted-string starting at the opening quote; backslash escapes the next character. */
function readQuotedString(text: string, pos: number): { value: string; end: number } | undefined {
  let value = '';
  for (let i = pos + 1; i < text.length; i++) {
    const c = text[i];
    if (c === '\\') {
      if (i + 1 >= text.length) return undefined;
      value += text[++i];
    } else if (c === '"') {
      return { value, end: i + 1 };
    } else {
      value += c;
    }
  }
  return undefined;
}

/** Splits a header list on commas that are outside quoted strings. */
export function splitHeaderList(header: string): string[] {
  const items: string[] = [];
  let start = 0;
  let inQuotes = false;
  for (let i = 0; i < header.length; i++) {
    const c = header[i];
    if (inQuotes) {
      if (c === '\\') i++;
      else if (c === '"') inQuotes = false;
    } else if (c === '"') {
      inQuotes = true;
    } else if (c === ',') {
      items.push(header.slice(start, i));
      start = i + 1;
    }
  }
  items.push(header.slice(start));
  // RFC 7230 §7: empty list elements are allowed and ignored.
  return items.map((item) => item.trim()).filter((item) => item !== '');
}

const QVALUE = /^(?:0(?:\.\d*)?|1(?:\.0*)?|\.\d+)$/;

/** Parses an Accept header (or the `accept` query parameter) into media ranges. */
export function parseAccept(header: string): ParsedAccept {
  const ranges: MediaRange[] = [];
  const invalid: string[] = [];
  for (const item of splitHeaderList(header)) {
    const parsed = parseMediaType(item);
    if ('error' in parsed) {
      invalid.push(item);
      continue;
    }
    const [main, sub] = parsed.type.split('/');
    if (main === '*' && sub !== '*') {
      invalid.push(item);
      continue;
    }
    let q = 1;
    if ('q' in parsed.params) {
      const raw = parsed.params.q;
      if (!QVALUE.test(raw)) {
        invalid.push(item);
        continue;
      }
      q = Number(raw);
      delete parsed.params.q;
    }
    if ('type' in parsed.params) parsed.params.type = parsed.params.type.toLowerCase();
    ranges.push({ type: parsed.type, params: parsed.params, q, index: ranges.length + invalid.length });
  }
  return { ranges, invalid };
}

/** How specifically `pattern` (maybe a wildcard) matches `mediaType`: 2 exact, 1 type/*, 0 *\/*, -1 none. */
export function mediaTypeMatch(pattern: string, mediaType: string): number {
  const p = pattern.toLowerCase();
  const m = mediaType.toLowerCase();
  if (p === m) return 2;
  if (p === '*/*') return 0;
  if (p.endsWith('/*') && m.startsWith(p.slice(0, -1))) return 1;
  return -1;
}

interface Candidate {
  offer: MediaOffer;
  offerIndex: number;
  transferSyntax?: string;
  tsIndex: number;
}

function defaultTransferSyntax(offer: MediaOffer): string | undefined {
  return offer.defaultTransferSyntax ?? offer.transferSyntaxes?.[0];
}

function acceptsAnyTransferSyntax(offer: MediaOffer): boolean {
  return offer.transferSyntaxes !== undefined && offer.anyTransferSyntax !== false;
}

/** Every (offer, transfer syntax) pair a route can produce, default transfer syntax first. */
function candidatesOf(offers: readonly MediaOffer[]): Candidate[] {
  const out: Candidate[] = [];
  offers.forEach((offer, offerIndex) => {
    const def = defaultTransferSyntax(offer);
    if (def === undefined) {
      out.push({ offer, offerIndex, tsIndex: 0 });
      return;
    }
    const list = [def, ...(offer.transferSyntaxes ?? []).filter((ts) => ts !== def)];
    if (acceptsAnyTransferSyntax(offer)) list.push('*');
    list.forEach((transferSyntax, tsIndex) => out.push({ offer, offerIndex, transferSyntax, tsIndex }));
  });
  return out;
}

/** Specificity with which `range` matches `candidate`, or -1. */
function rangeMatch(range: MediaRange, candidate: Candidate): number {
  const { offer } = candidate;
  const base = mediaTypeMatch(range.type, offer.mediaType);
  if (base < 0) return -1;
  let score = base * 10;
  // The part type only constrains multipart offers; without `type` any part type matches.
  if (offer.partType !== undefined && range.params.type !== undefined) {
    const part = mediaTypeMatch(range.params.type, offer.partType);
    if (part < 0) return -1;
    score += (part + 1) * 3;
  }
  if (candidate.transferSyntax !== undefined) {
    const wanted = range.params['transfer-syntax'];
    // PS3.18 §8.7.8.2: no transfer-syntax parameter means the default transfer syntax.
    if (wanted === undefined) {
      if (candidate.transferSyntax !== defaultTransferSyntax(offer)) return -1;
    } else if (wanted !== candidate.transferSyntax) {
      return -1;
    } else {
      score += 1;
    }
  }
  return score;
}

interface Scored {
  candidate: Candidate;
  q: number;
  specificity: number;
  rangeIndex: number;
}

/** RFC 7231 §5.3.2: the most specific matching range gives a candidate its quality. */
function score(ranges: readonly MediaRange[], candidate: Candidate): Scored | undefined {
  let best: Scored | undefined;
  for (const range of ranges) {
    const specificity = rangeMatch(range, candidate);
    if (specificity < 0) continue;
    if (best === undefined || specificity > best.specificity) {
      best = { candidate, q: range.q, specificity, rangeIndex: range.index };
    }
  }
  return best;
}

function better(a: Scored, b: Scored): boolean {
  if (a.q !== b.q) return a.q > b.q;
  if (a.specificity !== b.specificity) return a.specificity > b.specificity;
  if (a.rangeIndex !== b.rangeIndex) return a.rangeIndex < b.rangeIndex;
  if (a.candidate.offerIndex !== b.candidate.offerIndex) return a.candidate.offerIndex < b.candidate.offerIndex;
  return a.candidate.tsIndex < b.candidate.tsIndex;
}

function select(ranges: readonly MediaRange[], offers: readonly MediaOffer[]): Scored | undefined {
  let best: Scored | undefined;
  for (const candidate of candidatesOf(offers)) {
    const scored = score(ranges, candidate);
    if (scored === undefined || scored.q <= 0) continue;
    if (best === undefined || better(scored, best)) best = scored;
  }
  return best;
}

function toSelection(scored: Scored, source: 'query' | 'header'): MediaSelection {
  const { offer, transferSyntax } = scored.candidate;
  const selection: MediaSelection = { kind: 'selected', offer, mediaType: offer.mediaType, q: scored.q, source };
  if (offer.partType !== undefined) selection.partType = offer.partType;
  if (transferSyntax !== undefined) selection.transferSyntax = transferSyntax;
  return selection;
}

/**
 * Picks the best offer for a request (PS3.18 §8.7.8). Ties on q go to the more specific range, then
 * the range the client listed first, then the route's order (so wildcards select the default).
 */
export function negotiateMediaType(
  accept: string | undefined,
  offers: readonly MediaOffer[],
  options: NegotiateOptions = {},
): NegotiationResult {
  if (options.acceptQuery !== undefined && options.acceptQuery.trim() !== '') {
    const query = parseAccept(options.acceptQuery);
    if (query.ranges.length === 0) {
      return { kind: 'malformed', message: `invalid "accept" query parameter: ${options.acceptQuery}` };
    }
    const best = select(query.ranges, offers);
    if (best) return toSelection(best, 'query');
  }
  const header = accept === undefined || accept.trim() === '' ? undefined : accept;
  if (header === undefined && options.requireAccept) {
    return notAcceptable('the request has no Accept header', offers);
  }
  const parsed = parseAccept(header ?? '*/*');
  if (parsed.ranges.length === 0) {
    return { kind: 'malformed', message: `invalid Accept header: ${parsed.invalid.join(', ')}` };
  }
  const best = select(parsed.ranges, offers);
  if (best) return toSelection(best, 'header');
  return notAcceptable(`none of the media types in "${header}" can be produced`, offers);
}

function notAcceptable(message: string, offers: readonly MediaOffer[]): NotAcceptable {
  return { kind: 'not-acceptable', message, offered: offers.flatMap(describeOffer) };
}

/** The offer as Accept-able media types, one per transfer syntax (for 406 answers and logs). */
export function describeOffer(offer: MediaOffer): string[] {
  const base: Record<string, string> = {};
  if (offer.partType !== undefined) base.type = offer.partType;
  const def = defaultTransferSyntax(offer);
  if (def === undefined) return [formatMediaType(offer.mediaType, base)];
  const list = [def, ...(offer.transferSyntaxes ?? []).filter((ts) => ts !== def)];
  if (acceptsAnyTransferSyntax(offer)) list.push('*');
  return list.map((ts) => formatMediaType(offer.mediaType, { ...base, 'transfer-syntax': ts }));
}

/** Formats a media type with parameters, quoting values that are not tokens. */
export function formatMediaType(type: string, params: Readonly<Record<string, string>> = {}): string {
  let out = type;
  for (const [name, value] of Object.entries(params)) {
    if (/[\r\n]/.test(value) || !TCHAR.test(name)) throw new TypeError(`invalid media type parameter ${name}`);
    out += `; ${name}=${TCHAR.test(value) ? value : `"${value.replace(/(["\\])/g, '\\$1')}"`}`;
  }
  return out;
}
