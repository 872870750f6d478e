/**
 * Reads Orthanc-style configuration files (JSON with comments) into a typed GatewayConfig.
 *
 * Orthanc rules followed here (checked against Orthanc 1.10.1 and the DICOMweb plugin sources):
 *  - a directory argument means every *.json file in it, in name order;
 *  - several files are merged by top-level key, and a key defined in two files is an error;
 *  - "${VAR}" / "${VAR:-fallback}" take the environment variable, an unset one gives "";
 *  - relative StorageDirectory / IndexDirectory / HttpsCACertificates start from the folder
 *    of the file that sets them.
 * Bad values stop the start with a ConfigError naming the key and the file; unknown keys only warn.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parse, printParseErrorCode, type ParseError } from 'jsonc-parser';
import type {
  DicomModalityConfig,
  DicomWebConfig,
  DicomWebServerConfig,
  GatewayConfig,
  HttpLimitsConfig,
  OrthancPeerConfig,
  RemoteCoreConfig,
  SslConfig,
  UserContentType,
} from './gateway-config';
import { USER_TYPE_MAX, USER_TYPE_MIN } from '../core/embedded/metadata-types';
import { normalizeTag } from '../dicom/dictionary';

export class ConfigError extends Error {
  constructor(
    message: string,
    /** Dotted key the message is about, when there is one. */
    readonly key?: string,
    /** File the key came from, when there is one. */
    readonly file?: string,
  ) {
    super(message);
    this.name = 'ConfigError';
  }
}

export interface LoadConfigOptions {
  /** Receives non-fatal messages (unknown keys, unset environment variables...). Default: console.warn. */
  warn?: (msg: string) => void;
  /** Environment used for "${VAR}" substitution. Default: process.env. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Base of relative paths that no user file sets (defaults, built-in file). Default: process.cwd(). */
  cwd?: string;
}

type JsonObject = Record<string, unknown>;

/** Where a value sits, for messages; secret values are never echoed. */
interface Where {
  key: string;
  file: string;
  secret?: boolean;
}

/** A JSON object under validation; remembers the keys read so the rest can be reported. */
interface Section {
  values: JsonObject;
  path: string;
  fileOf: (key: string) => string;
  used: Set<string>;
}

interface Context {
  warn: (msg: string) => void;
  env: Readonly<Record<string, string | undefined>>;
  cwd: string;
}

/** Top-level key -> the file that defined it and the folder its relative paths start from. */
interface Origin {
  file: string;
  baseDir: string;
}

const PORT_MAX = 65535;
const MIN_TOKEN_LENGTH = 16;
const NO_FILE = '(built-in defaults)';

/** Orthanc keys we accept without using them, so that a real Orthanc configuration loads quietly. */
const IGNORED_ORTHANC_KEYS: ReadonlySet<string> = new Set([
  'BuiltinDecoderTranscoderOrder', 'CaseSensitivePN', 'CheckRevisions',
  'ConcurrentJobs', 'DatabaseServerIdentifier', 'DefaultPrivateCreator', 'DeidentifyLogs',
  'DeidentifyLogsDicomVersion', 'DicomAlwaysAllowFindWorklist',
  'DicomAlwaysAllowGet', 'DicomAssociationCloseDelay',
  'DicomCheckModalityHost', 'DicomEchoChecksFind', 'DicomLossyTranscodingQuality',
  'DicomModalitiesInDatabase', 'DicomScpTimeout', 'DicomScuPreferredTransferSyntax', 'DicomScuTimeout',
  'DicomThreadsCount', 'DicomTlsEnabled', 'DicomTlsRemoteCertificateRequired', 'Dictionary',
  'ExecuteLuaEnabled', 'ExtraMainDicomTags', 'HttpCompressionEnabled', 'HttpDescribeErrors',
  'HttpRequestTimeout', 'HttpServerEnabled', 'HttpThreadsCount', 'HttpVerbose',
  'IngestTranscodingOfCompressed', 'IngestTranscodingOfUncompressed', 'JobsHistorySize', 'KeepAlive',
  'LimitFindInstances', 'LimitFindResults', 'LoadPrivateDictionary', 'Locale', 'LuaScripts', 'MallocArenaMax',
  'MaximumPduLength', 'MaximumStorageCacheSize', 'MediaArchiveSize', 'OrthancExplorerEnabled',
  'OrthancPeersInDatabase', 'OverwriteInstances', 'Plugins', 'QueryRetrieveSize', 'RestApiWriteToFileSystemEnabled',
  'SaveJobs', 'SslMinimumProtocolVersion', 'StableAge', 'StorageAccessOnFind', 'StorageCommitmentReportsSize', 'StorageCompression',
  'StoreDicom', 'StoreMD5ForAttachments', 'StrictAetComparison', 'SyncStorageArea', 'SynchronousCMove',
  'SynchronousZipStream', 'TcpNoDelay', 'TemporaryDirectory', 'TranscodeDicomProtocol', 'UnknownSopClassAccepted',
  'WebDavDeleteAllowed', 'WebDavEnabled', 'WebDavUploadAllowed',
  'ZipLoaderThreads',
]);

/** DICOMweb plugin options we accept without using them. */
const IGNORED_DICOMWEB_KEYS: ReadonlySet<string> = new Set([
  'ServersInDatabase', 'MetadataWorkerThreadsCount', 'WadoRsLoaderThreadsCount', 'EnablePerformanceLogs',
]);

/** Orthanc 1.10 character sets for DefaultEncoding. */
const ENCODINGS = [
  'Ascii', 'Utf8', 'Latin1', 'Latin2', 'Latin3', 'Latin4', 'Latin5', 'Cyrillic', 'Windows1251', 'Arabic',
  'Greek', 'Hebrew', 'Thai', 'Japanese', 'JapaneseKanji', 'Korean', 'SimplifiedChinese',
] as const;

const MANUFACTURERS = ['Generic', 'GenericNoWildcardInDates', 'GenericNoUniversalWildcard', 'Vitrea', 'GE'] as const;

/** Obsolete manufacturers and what Orthanc 1.10 turns them into (it warns too). */
const OBSOLETE_MANUFACTURERS: Readonly<Record<string, string>> = {
  AgfaImpax: 'GenericNoWildcardInDates',
  SyngoVia: 'GenericNoWildcardInDates',
  EFilm2: 'Generic',
  MedInria: 'Generic',
  ClearCanvas: 'Generic',
  Dcm4Chee: 'Generic',
};

const METADATA_MODES = ['Full', 'MainDicomTags', 'Extrapolate'] as const;
const BINARY_MODES = ['BulkDataURI', 'InlineBinary'] as const;

/** Keys of a web service entry (peer or DICOMweb server) that are not user properties. */
const WEB_SERVICE_KEYS: ReadonlySet<string> = new Set([
  'Url', 'URL', 'Username', 'Password', 'HttpHeaders', 'CertificateFile', 'CertificateKeyFile',
  'CertificateKeyPassword', 'Pkcs11', 'Timeout',
]);

// ---------------------------------------------------------------------------------------------
// Entry point

export function loadConfig(files: string[], options: LoadConfigOptions = {}): GatewayConfig {
  const ctx: Context = {
    warn: options.warn ?? ((msg) => console.warn(msg)),
    env: options.env ?? process.env,
    cwd: options.cwd ?? process.cwd(),
  };
  const builtIn = files.length === 0;
  const paths = builtIn ? [defaultConfigFile()] : expandPaths(files, ctx);
  const { values, origins } = mergeFiles(paths, ctx, builtIn);
  const top = section(values, '', (key) => origins.get(key)?.file ?? NO_FILE);
  const baseDirOf = (key: string): string => origins.get(key)?.baseDir ?? ctx.cwd;
  const config = buildConfig(top, paths, baseDirOf, ctx);
  if (top.values.StorageCompression === true) {
    ctx.warn(`"StorageCompression" in ${at(top, 'StorageCompression').file} is not supported: files are stored uncompressed`);
  }
  reportUnknownKeys(top, IGNORED_ORTHANC_KEYS, ctx);
  return dropUndefined(config);
}

/** config/default.json of the package (found by walking up to package.json, so it works from src/ and dist/). */
export function defaultConfigFile(): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new ConfigError('Cannot find the package root to read config/default.json');
    dir = parent;
  }
  return path.join(dir, 'config', 'default.json');
}

function buildConfig(
  top: Section,
  sourceFiles: string[],
  baseDirOf: (key: string) => string,
  ctx: Context,
): GatewayConfig {
  const remoteAccessAllowed = readBool(top, 'RemoteAccessAllowed', false);
  const storageDirectory = readPath(top, 'StorageDirectory', './storage', baseDirOf);
  return {
    sourceFiles,
    name: readString(top, 'Name', 'dicomweb-gateway'),
    httpPort: readInt(top, 'HttpPort', 8042, 1, PORT_MAX),
    remoteAccessAllowed,
    // Orthanc >= 1.5.8: when absent, authentication follows RemoteAccessAllowed.
    authenticationEnabled: readBool(top, 'AuthenticationEnabled', remoteAccessAllowed),
    registeredUsers: readRegisteredUsers(top),
    storageDirectory,
    indexDirectory: readPath(top, 'IndexDirectory', storageDirectory, baseDirOf),
    maximumStorageSize: readInt(top, 'MaximumStorageSize', 0, 0),
    maximumPatientCount: readInt(top, 'MaximumPatientCount', 0, 0),
    httpTimeout: readInt(top, 'HttpTimeout', 60, 0),
    // HttpProxy may be "user:password@host:port", so it is treated as a secret.
    httpProxy: emptyToUndefined(readOptionalString(top, 'HttpProxy', true)),
    httpsVerifyPeers: readBool(top, 'HttpsVerifyPeers', true),
    httpsCACertificates: readOptionalPath(top, 'HttpsCACertificates', baseDirOf),
    orthancPeers: readEntries(top, 'OrthancPeers', (v, w) => parsePeer(v, w)),
    dicomModalities: readEntries(top, 'DicomModalities', (v, w) => parseModality(v, w, ctx)),
    dicomServerEnabled: readBool(top, 'DicomServerEnabled', true),
    dicomAet: readAet(take(top, 'DicomAet') ?? 'ORTHANC', at(top, 'DicomAet')),
    dicomPort: readInt(top, 'DicomPort', 4242, 1, PORT_MAX),
    dicomAlwaysAllow: {
      echo: readBool(top, 'DicomAlwaysAllowEcho', true),
      store: readBool(top, 'DicomAlwaysAllowStore', true),
      find: readBool(top, 'DicomAlwaysAllowFind', false),
      move: readBool(top, 'DicomAlwaysAllowMove', false),
    },
    dicomCheckCalledAet: readBool(top, 'DicomCheckCalledAet', false),
    defaultEncoding: readEnum(top, 'DefaultEncoding', ENCODINGS, 'Latin1'),
    acceptedTransferSyntaxes: readSyntaxPatterns(top, 'AcceptedTransferSyntaxes'),
    logExportedResources: readBool(top, 'LogExportedResources', false),
    dicomWeb: readDicomWeb(top, ctx),
    core: readCore(top, ctx),
    ohifRoot: readOhif(top, ctx),
    corsAllowedOrigins: readCors(top, ctx),
    readOnly: readBool(top, 'ReadOnly', false),
    bearerTokens: readBearerTokens(top),
    ssl: readSsl(top, baseDirOf),
    metricsEnabled: readBool(top, 'MetricsEnabled', true),
    httpLimits: readHttpLimits(top, ctx),
    userMetadata: readEntries(top, 'UserMetadata', (v, w) => expectInt(v, w, USER_TYPE_MIN, USER_TYPE_MAX), false),
    userContentTypes: readEntries(top, 'UserContentType', parseUserContentType, false),
  };
}

// ---------------------------------------------------------------------------------------------
// Files: expansion, parsing, environment substitution, merge

function expandPaths(files: string[], ctx: Context): string[] {
  const out: string[] = [];
  for (const file of files) {
    const abs = path.resolve(ctx.cwd, file);
    let stat: fs.Stats;
    try {
      stat = fs.statSync(abs);
    } catch {
      throw new ConfigError(`Invalid configuration: no such file or directory: ${abs}`, undefined, abs);
    }
    if (!stat.isDirectory()) {
      out.push(abs);
      continue;
    }
    const jsonFiles = listJsonFiles(abs);
    if (jsonFiles.length === 0) ctx.warn(`Configuration directory ${abs} contains no .json file`);
    out.push(...jsonFiles);
  }
  return out;
}

/** *.json files of a folder (case-insensitive extension, as Orthanc), sorted by name for a stable order. */
function listJsonFiles(dir: string): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((e) => !e.isDirectory() && path.extname(e.name).toLowerCase() === '.json')
    .map((e) => e.name)
    .sort()
    .map((name) => path.join(dir, name));
}

function mergeFiles(
  files: string[],
  ctx: Context,
  builtIn: boolean,
): { values: JsonObject; origins: Map<string, Origin> } {
  const values: JsonObject = {};
  const origins = new Map<string, Origin>();
  for (const file of files) {
    const content = readJsonFile(file);
    // The built-in file is not the user's: its relative paths start from where the user runs us.
    const baseDir = builtIn ? ctx.cwd : path.dirname(file);
    for (const [key, raw] of Object.entries(content)) {
      const previous = origins.get(key);
      if (previous) {
        throw new ConfigError(
          `Invalid configuration: "${key}" is defined in two files, ${previous.file} and ${file} ` +
            '(Orthanc merges files by top-level key; put the whole section in one file)',
          key,
          file,
        );
      }
      values[key] = substituteEnv(raw, { key, file }, ctx);
      origins.set(key, { file, baseDir });
    }
  }
  return { values, origins };
}

function readJsonFile(file: string): JsonObject {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new ConfigError(`Invalid configuration: cannot read ${file} (${code})`, undefined, file);
  }
  return parseJsonc(text, file);
}

/** JSON with comments and trailing commas; errors give line and column but never echo the text (secrets). */
function parseJsonc(text: string, file: string): JsonObject {
  const errors: ParseError[] = [];
  const value: unknown = parse(text.replace(/^\uFEFF/, ''), errors, {
    allowTrailingComma: true,
    disallowComments: false,
    allowEmptyContent: true,
  });
  if (errors.length > 0) {
    const first = errors[0];
    const { line, column } = lineAndColumn(text, first.offset);
    throw new ConfigError(
      `Invalid configuration: JSON syntax error in ${file} at line ${line}, column ${column}: ` +
        printParseErrorCode(first.error),
      undefined,
      file,
    );
  }
  if (!isObject(value)) {
    throw new ConfigError(`Invalid configuration: ${file} must contain a JSON object ({ ... })`, undefined, file);
  }
  return value;
}

/** 1-based line and column of a character offset. */
function lineAndColumn(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset);
  const lines = before.split('\n');
  return { line: lines.length, column: lines[lines.length - 1].length + 1 };
}

/** Replaces ${VAR} and ${VAR:-fallback} in every string value, at any depth. */
function substituteEnv(value: unknown, where: Where, ctx: Context): unknown {
  if (typeof value === 'string') return substituteInString(value, where, ctx);
  if (Array.isArray(value)) return value.map((v, i) => substituteEnv(v, { ...where, key: `${where.key}[${i}]` }, ctx));
  if (isObject(value)) {
    const out: JsonObject = {};
    for (const [k, v] of Object.entries(value)) out[k] = substituteEnv(v, { ...where, key: `${where.key}.${k}` }, ctx);
    return out;
  }
  return value;
}

function substituteInString(value: string, where: Where, ctx: Context): string {
  return value.replace(/\$\{([^}]*)\}/g, (_match, expr: string) => {
    const sep = expr.indexOf(':-');
    const name = sep >= 0 ? expr.slice(0, sep) : expr;
    const found = ctx.env[name];
    if (found !== undefined) return found;
    if (sep >= 0) return expr.slice(sep + 2);
    // Orthanc silently uses an empty string; we do the same but say so.
    ctx.warn(`Environment variable "${name}" used by "${where.key}" in ${where.file} is not set: using ""`);
    return '';
  });
}

// ---------------------------------------------------------------------------------------------
// Sections and typed readers

function section(values: JsonObject, sectionPath: string, fileOf: (key: string) => string): Section {
  return { values, path: sectionPath, fileOf, used: new Set() };
}

/** A nested object section, wholly from the file of its parent key. */
function subsection(parent: Section, key: string, value: JsonObject): Section {
  const file = parent.fileOf(key);
  return section(value, joinKey(parent.path, key), () => file);
}

function joinKey(prefix: string, key: string): string {
  return prefix === '' ? key : `${prefix}.${key}`;
}

function at(s: Section, key: string, secret = false): Where {
  return { key: joinKey(s.path, key), file: s.fileOf(key), secret };
}

/** The raw value of a key (undefined if absent), marking the key as known. */
function take(s: Section, key: string): unknown {
  s.used.add(key);
  return s.values[key];
}

function reportUnknownKeys(s: Section, ignored: ReadonlySet<string>, ctx: Context): void {
  for (const key of Object.keys(s.values)) {
    if (s.used.has(key) || ignored.has(key)) continue;
    const where = at(s, key);
    ctx.warn(`Unknown configuration key "${where.key}" in ${where.file}: ignored`);
  }
}

function readBool(s: Section, key: string, fallback: boolean): boolean {
  const v = take(s, key);
  return v === undefined ? fallback : expectBool(v, at(s, key));
}

function readInt(s: Section, key: string, fallback: number, min: number, max?: number): number {
  const v = take(s, key);
  return v === undefined ? fallback : expectInt(v, at(s, key), min, max);
}

function readString(s: Section, key: string, fallback: string, secret = false): string {
  const v = take(s, key);
  return v === undefined ? fallback : expectString(v, at(s, key, secret));
}

function readOptionalString(s: Section, key: string, secret = false): string | undefined {
  const v = take(s, key);
  return v === undefined ? undefined : expectString(v, at(s, key, secret));
}

function readEnum<T extends string>(s: Section, key: string, allowed: readonly T[], fallback: T): T {
  const v = take(s, key);
  return v === undefined ? fallback : expectEnum(v, at(s, key), allowed);
}

/** A directory or file path; relative ones start from the folder of the file that sets them (Orthanc). */
function readPath(s: Section, key: string, fallback: string, baseDirOf: (key: string) => string): string {
  const value = readString(s, key, fallback);
  if (value === '') throw invalid(at(s, key), 'must not be empty', value);
  return path.resolve(baseDirOf(key), value);
}

function readOptionalPath(s: Section, key: string, baseDirOf: (key: string) => string): string | undefined {
  const value = emptyToUndefined(readOptionalString(s, key));
  return value === undefined ? undefined : path.resolve(baseDirOf(key), value);
}

/**
 * A named map section such as OrthancPeers: { name: entry, ... }. Orthanc restricts the names of peers and
 * modalities (they appear in URLs); the DICOMweb plugin does not check server names.
 */
function readEntries<T>(
  s: Section,
  key: string,
  parseEntry: (v: unknown, w: Where) => T,
  checkNames = true,
): Record<string, T> {
  const v = take(s, key);
  if (v === undefined) return {};
  const where = at(s, key);
  const out: Record<string, T> = {};
  for (const [name, entry] of Object.entries(expectObject(v, where))) {
    const entryWhere = { ...where, key: `${where.key}.${name}` };
    if (checkNames) checkEntryName(name, entryWhere);
    out[name] = parseEntry(entry, entryWhere);
  }
  return out;
}

/** Orthanc only allows these characters in names of peers and modalities (they appear in URLs). */
function checkEntryName(name: string, where: Where): void {
  if (!/^[A-Za-z0-9_-]+$/.test(name)) {
    throw new ConfigError(
      `Invalid configuration: "${where.key}" in ${where.file}: names may only contain letters, digits, "-" and "_"`,
      where.key,
      where.file,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Value checks

function expectBool(v: unknown, w: Where): boolean {
  if (typeof v !== 'boolean') throw invalid(w, 'must be true or false', v);
  return v;
}

function expectInt(v: unknown, w: Where, min: number, max?: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || (max !== undefined && v > max)) {
    const range = max === undefined ? (min === 0 ? 'a non-negative integer' : `an integer from ${min}`) : `an integer from ${min} to ${max}`;
    throw invalid(w, `must be ${range}`, v);
  }
  return v;
}

function expectString(v: unknown, w: Where): string {
  if (typeof v !== 'string') throw invalid(w, 'must be a string', v);
  return v;
}

function expectObject(v: unknown, w: Where): JsonObject {
  if (!isObject(v)) throw invalid(w, 'must be a JSON object ({ ... })', v);
  return v;
}

function expectEnum<T extends string>(v: unknown, w: Where, allowed: readonly T[]): T {
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
    throw invalid(w, `must be one of ${allowed.map((a) => `"${a}"`).join(', ')}`, v);
  }
  return v as T;
}

/** A boolean, or the strings Orthanc stores boolean user properties as ("1"/"0"/"true"/"false"). */
function expectLooseBool(v: unknown, w: Where): boolean {
  if (typeof v === 'boolean') return v;
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  throw invalid(w, 'must be true or false', v);
}

function expectHttpUrl(v: unknown, w: Where): string {
  const s = expectString(v, w);
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    throw invalid(w, 'must be an http:// or https:// URL', s);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw invalid(w, 'must be an http:// or https:// URL', s);
  return s;
}

function expectStringMap(v: unknown, w: Where, secretValues: boolean): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, item] of Object.entries(expectObject(v, w))) {
    out[k] = expectString(item, { ...w, key: `${w.key}.${k}`, secret: secretValues });
  }
  return out;
}

function invalid(w: Where, expectation: string, got: unknown): ConfigError {
  const shown = w.secret ? '' : ` (got ${describe(got)})`;
  return new ConfigError(`Invalid configuration: "${w.key}" in ${w.file} ${expectation}${shown}`, w.key, w.file);
}

function missing(w: Where): ConfigError {
  return new ConfigError(`Invalid configuration: "${w.key}" is missing in ${w.file}`, w.key, w.file);
}

/** A short, credential-free rendering of a bad value. */
function describe(v: unknown): string {
  if (Array.isArray(v)) return 'an array';
  if (isObject(v)) return 'an object';
  if (typeof v !== 'string') return String(v);
  // URLs may carry "user:password@": never show that part.
  const clean = v.replace(/\/\/[^/@\s]*@/g, '//***@');
  const short = clean.length > 60 ? `${clean.slice(0, 57)}...` : clean;
  return JSON.stringify(short);
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function emptyToUndefined(v: string | undefined): string | undefined {
  return v === '' ? undefined : v;
}

// ---------------------------------------------------------------------------------------------
// Orthanc sections

/** A "UserContentType" entry: a type, or [type, MIME type] (Orthanc >= 1.5.0). */
function parseUserContentType(v: unknown, w: Where): UserContentType {
  if (!Array.isArray(v)) return { type: expectInt(v, w, USER_TYPE_MIN, USER_TYPE_MAX) };
  if (v.length !== 2) throw invalid(w, 'must be a type or [type, "MIME type"]', v);
  return { type: expectInt(v[0], { ...w, key: `${w.key}[0]` }, USER_TYPE_MIN, USER_TYPE_MAX), mime: expectString(v[1], { ...w, key: `${w.key}[1]` }) };
}

/** "BearerTokens": ["...", ...]; short tokens are refused (they could be guessed). */
function readBearerTokens(top: Section): string[] {
  const v = take(top, 'BearerTokens');
  if (v === undefined) return [];
  const w = at(top, 'BearerTokens', true);
  if (!Array.isArray(v)) throw invalid(w, 'must be an array of strings', v);
  return v.map((token, i) => {
    const item = { ...w, key: `${w.key}[${i}]` };
    const text = expectString(token, item);
    if (text.length < MIN_TOKEN_LENGTH || /\s/.test(text)) throw invalid(item, `must be at least ${MIN_TOKEN_LENGTH} characters without spaces`, text);
    return text;
  });
}

/** "SslEnabled", "SslCertificate" (PEM: certificate + private key), "SslVerifyPeers", "SslTrustedClientCertificates". */
function readSsl(top: Section, baseDirOf: (key: string) => string): SslConfig | undefined {
  const enabled = readBool(top, 'SslEnabled', false);
  const certificate = readOptionalPath(top, 'SslCertificate', baseDirOf);
  const verifyPeers = readBool(top, 'SslVerifyPeers', false);
  const trusted = readOptionalPath(top, 'SslTrustedClientCertificates', baseDirOf);
  if (!enabled) return undefined;
  if (certificate === undefined) throw missing(at(top, 'SslCertificate'));
  const pem = readPemFile(certificate, at(top, 'SslCertificate'));
  if (!pem.includes('CERTIFICATE-----') || !/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem)) {
    throw invalid(at(top, 'SslCertificate'), 'must be a PEM file holding the certificate and its private key', certificate);
  }
  if (!verifyPeers) return { certificate, verifyPeers };
  if (trusted === undefined) throw missing(at(top, 'SslTrustedClientCertificates'));
  if (!readPemFile(trusted, at(top, 'SslTrustedClientCertificates')).includes('CERTIFICATE-----')) {
    throw invalid(at(top, 'SslTrustedClientCertificates'), 'must be a PEM file of CA certificates', trusted);
  }
  return { certificate, verifyPeers, trustedClientCertificates: trusted };
}

function readPemFile(file: string, w: Where): string {
  try {
    return fs.readFileSync(file, 'latin1');
  } catch (err) {
    throw invalid(w, `must name a readable file (${(err as NodeJS.ErrnoException).code ?? 'error'})`, file);
  }
}

/** "HttpLimits": our own section; defaults fit normal use (see README, Security). */
function readHttpLimits(top: Section, ctx: Context): HttpLimitsConfig {
  const raw = take(top, 'HttpLimits');
  const s = subsection(top, 'HttpLimits', raw === undefined ? {} : expectObject(raw, at(top, 'HttpLimits')));
  const limits: HttpLimitsConfig = {
    maxRequestBodySize: readInt(s, 'MaxRequestBodySize', 4, 1),
    maxHeaderSize: readInt(s, 'MaxHeaderSize', 16, 1, 1024),
    headersTimeout: readInt(s, 'HeadersTimeout', 30, 1),
    requestTimeout: readInt(s, 'RequestTimeout', 3600, 0),
    keepAliveTimeout: readInt(s, 'KeepAliveTimeout', 65, 1),
    imageWorkConcurrency: readInt(s, 'ImageWorkConcurrency', os.availableParallelism(), 1),
    imageWorkQueueSize: readInt(s, 'ImageWorkQueueSize', 64, 0),
  };
  // Node refuses a headers timeout longer than the request timeout
  if (limits.requestTimeout !== 0 && limits.headersTimeout > limits.requestTimeout) {
    throw invalid(at(s, 'HeadersTimeout'), `must not exceed "HttpLimits.RequestTimeout" (${limits.requestTimeout})`, limits.headersTimeout);
  }
  reportUnknownKeys(s, new Set(), ctx);
  return limits;
}

function readRegisteredUsers(top: Section): Record<string, string> {
  const v = take(top, 'RegisteredUsers');
  return v === undefined ? {} : expectStringMap(v, at(top, 'RegisteredUsers'), true);
}

/** AE titles are at most 16 characters (PS3.5 AE). */
function readAet(v: unknown, w: Where): string {
  const s = expectString(v, w);
  if (s.trim() === '' || s.length > 16 || s.includes('\\')) throw invalid(w, 'must be an AE title of 1 to 16 characters', s);
  return s;
}

function readPort(v: unknown, w: Where): number {
  // Orthanc also takes the port of a modality as a string ("104").
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  return expectInt(n, w, 1, PORT_MAX);
}

function readManufacturer(v: unknown, w: Where, ctx: Context): string {
  const s = expectString(v, w);
  const replacement = OBSOLETE_MANUFACTURERS[s];
  if (replacement !== undefined) {
    ctx.warn(`"${w.key}" in ${w.file}: manufacturer "${s}" is obsolete, using "${replacement}" (as Orthanc does)`);
    return replacement;
  }
  return expectEnum(s, w, MANUFACTURERS);
}

/** [AET, host, port], [AET, host, port, manufacturer], or { AET, Host, Port, Manufacturer, Allow* }. */
function parseModality(v: unknown, w: Where, ctx: Context): DicomModalityConfig {
  if (Array.isArray(v)) {
    if (v.length !== 3 && v.length !== 4) throw invalid(w, 'must be [AET, host, port] or [AET, host, port, manufacturer]', v);
    return {
      aet: readAet(v[0], { ...w, key: `${w.key}[0]` }),
      host: expectString(v[1], { ...w, key: `${w.key}[1]` }),
      port: readPort(v[2], { ...w, key: `${w.key}[2]` }),
      manufacturer: v.length === 4 ? readManufacturer(v[3], { ...w, key: `${w.key}[3]` }, ctx) : 'Generic',
      allowEcho: true,
      allowFind: true,
      allowMove: true,
      allowStore: true,
    };
  }
  const s = section(expectObject(v, w), w.key, () => w.file);
  const required = (key: string): unknown => {
    const value = take(s, key);
    if (value === undefined) throw missing(at(s, key));
    return value;
  };
  const manufacturer = take(s, 'Manufacturer');
  return {
    aet: readAet(required('AET'), at(s, 'AET')),
    host: expectString(required('Host'), at(s, 'Host')),
    port: readPort(required('Port'), at(s, 'Port')),
    manufacturer: manufacturer === undefined ? 'Generic' : readManufacturer(manufacturer, at(s, 'Manufacturer'), ctx),
    allowEcho: readBool(s, 'AllowEcho', true),
    allowFind: readBool(s, 'AllowFind', true),
    allowMove: readBool(s, 'AllowMove', true),
    allowStore: readBool(s, 'AllowStore', true),
  };
}

/** What a peer and a DICOMweb server share, plus the object's section for the caller's own keys. */
interface WebService {
  common: OrthancPeerConfig;
  rest?: Section;
}

/** [url], [url, username, password], or { Url, Username, Password, HttpHeaders, Certificate*... }. */
function parseWebService(v: unknown, w: Where): WebService {
  if (Array.isArray(v)) return { common: parseWebServiceArray(v, w) };
  const s = section(expectObject(v, w), w.key, () => w.file);
  const urlKey = s.values.Url === undefined && s.values.URL !== undefined ? 'URL' : 'Url';
  const url = take(s, urlKey);
  if (url === undefined) throw missing(at(s, 'Url'));
  const headers = take(s, 'HttpHeaders');
  const common: OrthancPeerConfig = {
    url: withTrailingSlash(expectHttpUrl(url, at(s, urlKey))),
    ...credentials(readOptionalString(s, 'Username'), readOptionalString(s, 'Password', true), at(s, 'Password', true)),
    // Headers often carry tokens (Authorization): their values are secrets.
    httpHeaders: headers === undefined ? {} : expectStringMap(headers, at(s, 'HttpHeaders'), true),
    certificateFile: emptyToUndefined(readOptionalString(s, 'CertificateFile')),
    certificateKeyFile: emptyToUndefined(readOptionalString(s, 'CertificateKeyFile')),
    certificateKeyPassword: emptyToUndefined(readOptionalString(s, 'CertificateKeyPassword', true)),
  };
  return { common: dropUndefined(common), rest: s };
}

function parseWebServiceArray(v: unknown[], w: Where): OrthancPeerConfig {
  if (v.length !== 1 && v.length !== 3) {
    const hint = v.length === 2 ? ' (the password is missing)' : '';
    throw invalid({ ...w, secret: true }, `must be [url] or [url, username, password]${hint}`, v);
  }
  const url = withTrailingSlash(expectHttpUrl(v[0], { ...w, key: `${w.key}[0]` }));
  const username = v.length === 3 ? expectString(v[1], { ...w, key: `${w.key}[1]` }) : undefined;
  const password = v.length === 3 ? expectString(v[2], { ...w, key: `${w.key}[2]`, secret: true }) : undefined;
  return dropUndefined({ url, httpHeaders: {}, ...credentials(username, password, { ...w, key: `${w.key}[2]` }) });
}

/** Orthanc refuses a password without a user name; empty strings mean "no credentials". */
function credentials(
  username: string | undefined,
  password: string | undefined,
  w: Where,
): { username?: string; password?: string } {
  const user = emptyToUndefined(username);
  const pass = emptyToUndefined(password);
  if (pass !== undefined && user === undefined) {
    throw new ConfigError(`Invalid configuration: "${w.key}" in ${w.file} is given without a user name`, w.key, w.file);
  }
  return user === undefined ? {} : { username: user, password: pass ?? '' };
}

/** What Orthanc keeps of a user property of a peer: text, Booleans as "1"/"0", integers as text; undefined = refused. */
export function peerUserProperty(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'boolean') return value ? '1' : '0';
  if (typeof value === 'number' && Number.isSafeInteger(value)) return String(value);
  return undefined;
}

function isRegularFile(file: string): boolean {
  try {
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

function parsePeer(v: unknown, w: Where): OrthancPeerConfig {
  const { common, rest } = parseWebService(v, w);
  // Orthanc refuses to start when a client certificate or its key is not a file (we would fail on every store)
  const files = [['CertificateFile', common.certificateFile], ['CertificateKeyFile', common.certificateKeyFile]] as const;
  for (const [key, file] of files) {
    if (file !== undefined && !isRegularFile(file)) throw invalid({ ...w, key: `${w.key}.${key}` }, 'must name an existing file', file);
  }
  if (rest === undefined) return common;
  const timeout = take(rest, 'Timeout');
  // Orthanc keeps the other keys of a peer as user properties (shown by GET /peers?expand)
  const properties: Record<string, string> = {};
  for (const [key, value] of Object.entries(rest.values)) {
    if (WEB_SERVICE_KEYS.has(key) || rest.used.has(key)) continue;
    const text = peerUserProperty(value);
    if (text === undefined) throw invalid(at(rest, key), 'must be a string, a Boolean or an integer (a user property of the peer)', value);
    properties[key] = text;
  }
  return dropUndefined({
    ...common,
    timeout: timeout === undefined ? undefined : expectInt(timeout, at(rest, 'Timeout'), 0),
    userProperties: Object.keys(properties).length > 0 ? properties : undefined,
  });
}

/** A peer defined at run time (PUT /peers/{name}) by the rules of "OrthancPeers"; errors are ConfigErrors naming `origin`. */
export function parsePeerDefinition(name: string, value: unknown, origin: string): OrthancPeerConfig {
  const where = { key: name, file: origin };
  checkEntryName(name, where);
  return parsePeer(value, where);
}

function parseServer(v: unknown, w: Where): DicomWebServerConfig {
  const { common, rest } = parseWebService(v, w);
  const server: DicomWebServerConfig = {
    ...common,
    timeout: 0,
    hasDelete: false,
    chunkedTransfers: true,
    userProperties: {},
  };
  if (rest === undefined) return server;
  const timeout = take(rest, 'Timeout');
  const hasDelete = take(rest, 'HasDelete');
  const chunked = take(rest, 'ChunkedTransfers');
  if (timeout !== undefined) server.timeout = expectInt(timeout, at(rest, 'Timeout'), 0);
  if (hasDelete !== undefined) server.hasDelete = expectLooseBool(hasDelete, at(rest, 'HasDelete'));
  if (chunked !== undefined) server.chunkedTransfers = expectLooseBool(chunked, at(rest, 'ChunkedTransfers'));
  for (const [key, value] of Object.entries(rest.values)) {
    if (!WEB_SERVICE_KEYS.has(key) && !rest.used.has(key)) server.userProperties[key] = value;
  }
  return server;
}

function withTrailingSlash(url: string): string {
  return url.endsWith('/') ? url : `${url}/`;
}

function dropUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

// ---------------------------------------------------------------------------------------------
// DicomWeb, Core, Ohif

/** "/" + root + "/", as the plugin does for Root and PublicRoot. */
function normaliseRoot(root: string): string {
  let r = root.startsWith('/') ? root : `/${root}`;
  if (!r.endsWith('/')) r += '/';
  return r;
}

/** Leading slash, no trailing slash, as the plugin does for WadoRoot. */
function normaliseWadoRoot(root: string, w: Where): string {
  const r = (root.startsWith('/') ? root : `/${root}`).replace(/\/+$/, '');
  if (r === '') throw invalid(w, 'must be a path such as "/wado", not "/"', root);
  return r;
}

function readDicomWeb(top: Section, ctx: Context): DicomWebConfig {
  const raw = take(top, 'DicomWeb');
  const s = subsection(top, 'DicomWeb', raw === undefined ? {} : expectObject(raw, at(top, 'DicomWeb')));
  const publicRoot = readOptionalString(s, 'PublicRoot');
  const config: DicomWebConfig = {
    enable: readBool(s, 'Enable', true),
    root: normaliseRoot(readString(s, 'Root', '/dicom-web/')),
    enableWado: readBool(s, 'EnableWado', true),
    wadoRoot: normaliseWadoRoot(readString(s, 'WadoRoot', '/wado'), at(s, 'WadoRoot')),
    host: emptyToUndefined(readOptionalString(s, 'Host')),
    ssl: readBool(s, 'Ssl', false),
    publicRoot: publicRoot === undefined ? undefined : normaliseRoot(publicRoot),
    stowMaxInstances: readInt(s, 'StowMaxInstances', 10, 0),
    stowMaxSize: readInt(s, 'StowMaxSize', 10, 0),
    // what a STOW-RS client may send us (StowMaxSize/StowMaxInstances are about what we send)
    stowMaxRequestSize: readInt(s, 'StowMaxRequestSize', 4096, 0),
    stowMaxParts: readInt(s, 'StowMaxParts', 10000, 0),
    qidoCaseSensitive: readBool(s, 'QidoCaseSensitive', true),
    qidoMaxResults: readInt(s, 'QidoMaxResults', 10000, 1),
    studiesMetadata: readEnum(s, 'StudiesMetadata', METADATA_MODES, 'Full'),
    seriesMetadata: readEnum(s, 'SeriesMetadata', METADATA_MODES, 'Full'),
    studiesMetadataExtrapolatedTags: readTagList(s, 'StudiesMetadataExtrapolatedTags'),
    seriesMetadataExtrapolatedTags: readTagList(s, 'SeriesMetadataExtrapolatedTags'),
    enableMetadataCache: readBool(s, 'EnableMetadataCache', true),
    otherBinaryMode: readEnum(s, 'OtherBinaryMode', BINARY_MODES, 'BulkDataURI'),
    servers: readEntries(s, 'Servers', (v, w) => parseServer(v, w), false),
  };
  reportUnknownKeys(s, IGNORED_DICOMWEB_KEYS, ctx);
  return dropUndefined(config);
}

/** "Core": { "Url", "Username", "Password" } selects a remote Orthanc; an empty Url keeps the embedded core. */
/** "AcceptedTransferSyntaxes": one pattern or a list of them (UIDs with `*` and `?`), every syntax by default. */
function readSyntaxPatterns(s: Section, key: string): string[] {
  const w = at(s, key);
  const value = take(s, key) ?? ['1.2.840.10008.1.*'];
  const list = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(list)) throw invalid(w, 'must be a transfer syntax UID pattern or a list of them', value);
  return list.map((v, i) => {
    const text = expectString(v, { ...w, key: `${w.key}[${i}]` });
    if (!/^[0-9.*?]+$/.test(text)) throw invalid({ ...w, key: `${w.key}[${i}]` }, 'is not a transfer syntax UID pattern', v);
    return text;
  });
}

/** A list of DICOM tags, each a keyword or "gggg,eeee" (as the plugin's *ExtrapolatedTags take them). */
function readTagList(s: Section, key: string): string[] {
  const w = at(s, key);
  const list = take(s, key) ?? [];
  if (!Array.isArray(list)) throw invalid(w, 'must be an array of tags such as "ImagePositionPatient" or "0020,0032"', list);
  return list.map((v, i) => {
    const tag = normalizeTag(expectString(v, { ...w, key: `${w.key}[${i}]` }));
    if (tag === undefined) throw invalid({ ...w, key: `${w.key}[${i}]` }, 'is not a DICOM tag or keyword', v);
    return tag;
  });
}

function readCore(top: Section, ctx: Context): RemoteCoreConfig | undefined {
  const raw = take(top, 'Core');
  if (raw === undefined) return undefined;
  const s = subsection(top, 'Core', expectObject(raw, at(top, 'Core')));
  const url = readString(s, 'Url', '');
  const creds = credentials(readOptionalString(s, 'Username'), readOptionalString(s, 'Password', true), at(s, 'Password', true));
  reportUnknownKeys(s, new Set(), ctx);
  // "Url": "${ORTHANC_URL}" with the variable unset means "no remote core".
  if (url === '') return undefined;
  // No trailing slash, so that callers can append "/instances".
  const base = expectHttpUrl(url, at(s, 'Url')).replace(/\/+$/, '');
  return { url: base, ...creds };
}

function readOhif(top: Section, ctx: Context): string | undefined {
  const raw = take(top, 'Ohif');
  const s = subsection(top, 'Ohif', raw === undefined ? {} : expectObject(raw, at(top, 'Ohif')));
  const enable = readBool(s, 'Enable', true);
  const root = normaliseRoot(readString(s, 'Root', '/ohif/'));
  reportUnknownKeys(s, new Set(), ctx);
  return enable ? root : undefined;
}

/** "Cors": {"AllowedOrigins": ["https://viewer.example.org", ...]}: exact origins (scheme://host[:port]) or "*". */
function readCors(top: Section, ctx: Context): string[] {
  const raw = take(top, 'Cors');
  if (raw === undefined) return [];
  const s = subsection(top, 'Cors', expectObject(raw, at(top, 'Cors')));
  const w = at(s, 'AllowedOrigins');
  const list = take(s, 'AllowedOrigins') ?? [];
  if (!Array.isArray(list)) throw invalid(w, 'must be an array of origins such as "https://viewer.example.org"', list);
  reportUnknownKeys(s, new Set(), ctx);
  return list.map((v, i) => expectOrigin(v, { ...w, key: `${w.key}[${i}]` }));
}

function expectOrigin(v: unknown, w: Where): string {
  const text = expectString(v, w);
  if (text === '*') return text;
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    url = undefined;
  }
  // a browser sends the origin without path or trailing slash: anything else would never match
  if (!url || !/^https?:$/.test(url.protocol) || url.origin !== text) {
    throw invalid(w, 'must be "*" or an origin such as "https://viewer.example.org" (no path, no trailing slash)', text);
  }
  return text;
}
