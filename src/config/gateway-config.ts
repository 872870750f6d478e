/**
 * The typed configuration, parsed once from Orthanc-style JSON files (see load-config.ts).
 * Field names mirror the Orthanc configuration keys so that a reader can map them one to one.
 */

export interface RemoteCoreConfig {
  /** Base URL of a real Orthanc's REST API, e.g. http://127.0.0.1:8042 */
  url: string;
  username?: string;
  password?: string;
}

export interface DicomWebServerConfig {
  url: string;
  username?: string;
  password?: string;
  httpHeaders: Record<string, string>;
  certificateFile?: string;
  certificateKeyFile?: string;
  certificateKeyPassword?: string;
  /** Seconds; 0 = use the global HttpTimeout. */
  timeout: number;
  hasDelete: boolean;
  chunkedTransfers: boolean;
  /** Any other user-defined properties, kept as given (Orthanc allows them). */
  userProperties: Record<string, unknown>;
}

export interface DicomWebConfig {
  enable: boolean;
  /** Always begins and ends with '/', e.g. '/dicom-web/'. */
  root: string;
  enableWado: boolean;
  /** Always begins with '/', no trailing '/', e.g. '/wado'. */
  wadoRoot: string;
  /** Host (and optional port) to use in absolute URLs instead of the request's Host header. */
  host?: string;
  ssl: boolean;
  /** Public root to use in absolute URLs (reverse proxies), begins and ends with '/'. */
  publicRoot?: string;
  /** 0 = no limit */
  stowMaxInstances: number;
  /** Megabytes; 0 = no limit */
  stowMaxSize: number;
  /** Our addition ("StowMaxRequestSize"): megabytes one incoming STOW-RS body may hold once decoded (413 beyond); 0 = no limit. */
  stowMaxRequestSize: number;
  /** Our addition ("StowMaxParts"): parts one incoming STOW-RS body may hold (413 beyond); 0 = no limit. */
  stowMaxParts: number;
  qidoCaseSensitive: boolean;
  /** Our addition ("QidoMaxResults"): most matches one QIDO-RS answer holds; more give a 299 Warning (PS3.18 §8.3.4.4). */
  qidoMaxResults: number;
  studiesMetadata: 'Full' | 'MainDicomTags' | 'Extrapolate';
  seriesMetadata: 'Full' | 'MainDicomTags' | 'Extrapolate';
  /** Tags (8 upper-case hex digits) that "Extrapolate" mode reads from sampled files. */
  studiesMetadataExtrapolatedTags: string[];
  seriesMetadataExtrapolatedTags: string[];
  enableMetadataCache: boolean;
  otherBinaryMode: 'BulkDataURI' | 'InlineBinary';
  servers: Record<string, DicomWebServerConfig>;
}

export interface OrthancPeerConfig {
  url: string;
  username?: string;
  password?: string;
  httpHeaders: Record<string, string>;
  certificateFile?: string;
  certificateKeyFile?: string;
  certificateKeyPassword?: string;
  /** Seconds; absent or 0 = use the global HttpTimeout. */
  timeout?: number;
  /** Other keys of the object form, kept as Orthanc keeps them: text (Booleans as "1"/"0"). Absent = none. */
  userProperties?: Record<string, string>;
}

export interface DicomModalityConfig {
  aet: string;
  host: string;
  port: number;
  manufacturer: string;
  allowEcho: boolean;
  allowFind: boolean;
  allowMove: boolean;
  allowStore: boolean;
}

/** Orthanc's defaults: echo and store from anyone, find and move from known modalities only. */
export interface DicomAlwaysAllowConfig {
  echo: boolean;
  store: boolean;
  find: boolean;
  move: boolean;
}

export interface GatewayConfig {
  /** The files the configuration was read from, in order (for messages). */
  sourceFiles: string[];
  name: string;
  httpPort: number;
  remoteAccessAllowed: boolean;
  authenticationEnabled: boolean;
  /** user name -> password */
  registeredUsers: Record<string, string>;
  /** Absolute path. */
  storageDirectory: string;
  /** Absolute path; defaults to storageDirectory. */
  indexDirectory: string;
  /** Megabytes; 0 = no limit */
  maximumStorageSize: number;
  /** 0 = no limit */
  maximumPatientCount: number;
  /** Seconds, for outbound HTTP (client primitives, peers, remote core). 0 = no timeout. */
  httpTimeout: number;
  httpProxy?: string;
  httpsVerifyPeers: boolean;
  httpsCACertificates?: string;
  orthancPeers: Record<string, OrthancPeerConfig>;
  dicomModalities: Record<string, DicomModalityConfig>;
  dicomServerEnabled: boolean;
  dicomAet: string;
  dicomPort: number;
  /** "DicomAlwaysAllow{Echo,Store,Find,Move}": serve that DIMSE request from any calling AE title, known or not. */
  dicomAlwaysAllow: DicomAlwaysAllowConfig;
  /** "DicomCheckCalledAet": refuse associations whose called AE title is not "DicomAet". */
  dicomCheckCalledAet: boolean;
  defaultEncoding: string;
  /** "AcceptedTransferSyntaxes": patterns (`*`, `?`) of the transfer syntaxes C-STORE accepts. */
  acceptedTransferSyntaxes: string[];
  logExportedResources: boolean;
  dicomWeb: DicomWebConfig;
  /** Set when the gateway fronts a real Orthanc ("Core": {"Url": ...}); absent = embedded core. */
  core?: RemoteCoreConfig;
  /** Our addition: path of the OHIF viewer, or undefined when disabled ("Ohif": {"Enable", "Root"}). */
  ohifRoot?: string;
  /** Our addition: origins allowed to call us from a browser ("Cors": {"AllowedOrigins": [...]}); "*" = any. */
  corsAllowedOrigins: string[];
  /** Our addition ("ReadOnly"): every HTTP method that writes answers 403 (see server/read-only.ts). */
  readOnly: boolean;
  /** Our addition ("BearerTokens"): tokens accepted as "Authorization: Bearer <token>" when authentication is on. */
  bearerTokens: string[];
  /** "SslEnabled" + "SslCertificate" (one PEM file with the certificate and its private key): serve HTTPS. */
  ssl?: SslConfig;
  /** "MetricsEnabled" (Orthanc, default true): GET /tools/metrics-prometheus has content. */
  metricsEnabled: boolean;
  /** Our addition ("HttpLimits"): what one client may ask of the HTTP server (see server/request-limits.ts). */
  httpLimits: HttpLimitsConfig;
  /** "UserMetadata": name -> metadata type (1024..65535). */
  userMetadata: Record<string, number>;
  /** "UserContentType": name -> attachment type (1024..65535) and the MIME type its data is served with. */
  userContentTypes: Record<string, UserContentType>;
}

export interface UserContentType {
  type: number;
  /** Absent: application/octet-stream. */
  mime?: string;
}

export interface SslConfig {
  /** Absolute path of the PEM file holding the certificate (and chain) and the private key. */
  certificate: string;
  /** "SslVerifyPeers": clients must present a certificate signed by one of "SslTrustedClientCertificates". */
  verifyPeers: boolean;
  /** Absolute path of a PEM file of trusted CA certificates; set when verifyPeers is. */
  trustedClientCertificates?: string;
}

export interface HttpLimitsConfig {
  /** Megabytes of a request body that is not an upload (JSON and other small bodies); 413 beyond. */
  maxRequestBodySize: number;
  /** Kilobytes of the request line and headers; 431 beyond. */
  maxHeaderSize: number;
  /** Seconds for a request's headers to arrive; 408 and the connection is closed beyond. */
  headersTimeout: number;
  /** Seconds for a whole request (body included) to arrive; 0 = no limit. */
  requestTimeout: number;
  /** Seconds an idle keep-alive connection stays open. */
  keepAliveTimeout: number;
  /** Renderings, thumbnails and transcodings run at once. */
  imageWorkConcurrency: number;
  /** Such requests waiting for a turn; one more is answered 503 with Retry-After. */
  imageWorkQueueSize: number;
}
