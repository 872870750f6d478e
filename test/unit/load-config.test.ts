import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ConfigError, defaultConfigFile, loadConfig, type LoadConfigOptions } from '../../src/config/load-config';
import type { GatewayConfig } from '../../src/config/gateway-config';

let dir: string;
let warnings: string[];

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'load-config-'));
  warnings = [];
});

afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Writes a file under the test directory and returns its absolute path. */
function write(name: string, text: string): string {
  const file = path.join(dir, name);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
  return file;
}

function load(files: string[], options: LoadConfigOptions = {}): GatewayConfig {
  return loadConfig(files, { warn: (m) => warnings.push(m), cwd: dir, env: {}, ...options });
}

/** Loads one file with the given JSON content. */
function loadJson(content: unknown, options: LoadConfigOptions = {}): GatewayConfig {
  return load([write('config.json', JSON.stringify(content))], options);
}

/** The ConfigError thrown by fn (fails the test when nothing or something else is thrown). */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('defaults', () => {
  it('reads config/default.json of the package when no file is given', () => {
    const config = load([]);
    expect(config.sourceFiles).toEqual([defaultConfigFile()]);
    expect(fs.existsSync(defaultConfigFile())).toBe(true);
    expect(config).toMatchObject({
      name: 'dicomweb-gateway',
      httpPort: 8042,
      remoteAccessAllowed: false,
      authenticationEnabled: false,
      // The built-in file's relative paths start from the working directory.
      storageDirectory: path.join(dir, 'storage'),
      indexDirectory: path.join(dir, 'storage'),
      dicomWeb: { enable: true, root: '/dicom-web/', enableWado: true, wadoRoot: '/wado', servers: {} },
      ohifRoot: '/ohif/',
    });
    expect(config.core).toBeUndefined();
    expect(warnings).toEqual([]);
  });

  it('gives every key its Orthanc default when the file is empty', () => {
    const config = loadJson({});
    expect(config).toEqual({
      sourceFiles: [path.join(dir, 'config.json')],
      name: 'dicomweb-gateway',
      httpPort: 8042,
      remoteAccessAllowed: false,
      authenticationEnabled: false,
      registeredUsers: {},
      bearerTokens: [],
      storageDirectory: path.join(dir, 'storage'),
      indexDirectory: path.join(dir, 'storage'),
      maximumStorageSize: 0,
      maximumPatientCount: 0,
      httpTimeout: 60,
      httpsVerifyPeers: true,
      orthancPeers: {},
      dicomModalities: {},
      dicomServerEnabled: true,
      dicomAet: 'ORTHANC',
      dicomPort: 4242,
      dicomAlwaysAllow: { echo: true, store: true, find: false, move: false },
      dicomCheckCalledAet: false,
      defaultEncoding: 'Latin1',
      acceptedTransferSyntaxes: ['1.2.840.10008.1.*'],
      logExportedResources: false,
      dicomWeb: {
        enable: true,
        root: '/dicom-web/',
        enableWado: true,
        wadoRoot: '/wado',
        ssl: false,
        stowMaxInstances: 10,
        stowMaxSize: 10,
        stowMaxRequestSize: 4096,
        stowMaxParts: 10000,
        qidoCaseSensitive: true,
        qidoMaxResults: 10000,
        studiesMetadata: 'Full',
        seriesMetadata: 'Full',
        studiesMetadataExtrapolatedTags: [],
        seriesMetadataExtrapolatedTags: [],
        enableMetadataCache: true,
        otherBinaryMode: 'BulkDataURI',
        servers: {},
      },
      ohifRoot: '/ohif/',
      corsAllowedOrigins: [],
      readOnly: false,
      userMetadata: {},
      userContentTypes: {},
      metricsEnabled: true,
      httpLimits: {
        maxRequestBodySize: 4,
        maxHeaderSize: 16,
        headersTimeout: 30,
        requestTimeout: 3600,
        keepAliveTimeout: 65,
        imageWorkConcurrency: os.availableParallelism(),
        imageWorkQueueSize: 64,
      },
    });
    expect(config.httpProxy).toBeUndefined();
    expect(config.httpsCACertificates).toBeUndefined();
  });

  it('enables authentication by default when remote access is allowed (Orthanc >= 1.5.8)', () => {
    expect(loadJson({ RemoteAccessAllowed: true }).authenticationEnabled).toBe(true);
    expect(loadJson({ RemoteAccessAllowed: true, AuthenticationEnabled: false }).authenticationEnabled).toBe(false);
  });

  it('reads every honoured key', () => {
    const config = loadJson({
      Name: 'pacs',
      HttpPort: 80,
      RemoteAccessAllowed: true,
      AuthenticationEnabled: true,
      RegisteredUsers: { alice: 'wonderland' },
      StorageDirectory: '/var/lib/gw',
      IndexDirectory: '/var/lib/gw-index',
      MaximumStorageSize: 1000,
      MaximumPatientCount: 5,
      HttpTimeout: 0,
      HttpProxy: 'proxy:3128',
      HttpsVerifyPeers: false,
      HttpsCACertificates: '/etc/ssl/ca.pem',
      DicomServerEnabled: false,
      DicomAet: 'GATEWAY',
      DicomPort: 104,
      DicomAlwaysAllowEcho: false,
      DicomAlwaysAllowStore: false,
      DicomAlwaysAllowFind: true,
      DicomAlwaysAllowMove: true,
      DicomCheckCalledAet: true,
      DefaultEncoding: 'Utf8',
      LogExportedResources: true,
      ReadOnly: true,
      DicomWeb: {
        Enable: false,
        Host: 'example.org:8080',
        Ssl: true,
        PublicRoot: 'public/dicom-web',
        StowMaxInstances: 0,
        StowMaxSize: 0,
        QidoCaseSensitive: false,
        QidoMaxResults: 50,
        StudiesMetadata: 'MainDicomTags',
        SeriesMetadata: 'Extrapolate',
        EnableMetadataCache: false,
        OtherBinaryMode: 'InlineBinary',
        EnableWado: false,
      },
    });
    expect(config).toMatchObject({
      name: 'pacs',
      httpPort: 80,
      remoteAccessAllowed: true,
      authenticationEnabled: true,
      registeredUsers: { alice: 'wonderland' },
      storageDirectory: '/var/lib/gw',
      indexDirectory: '/var/lib/gw-index',
      maximumStorageSize: 1000,
      maximumPatientCount: 5,
      httpTimeout: 0,
      httpProxy: 'proxy:3128',
      httpsVerifyPeers: false,
      httpsCACertificates: '/etc/ssl/ca.pem',
      dicomServerEnabled: false,
      dicomAet: 'GATEWAY',
      dicomPort: 104,
      dicomAlwaysAllow: { echo: false, store: false, find: true, move: true },
      dicomCheckCalledAet: true,
      defaultEncoding: 'Utf8',
      logExportedResources: true,
      readOnly: true,
      dicomWeb: {
        enable: false,
        enableWado: false,
        host: 'example.org:8080',
        ssl: true,
        publicRoot: '/public/dicom-web/',
        stowMaxInstances: 0,
        stowMaxSize: 0,
        qidoCaseSensitive: false,
        qidoMaxResults: 50,
        studiesMetadata: 'MainDicomTags',
        seriesMetadata: 'Extrapolate',
        enableMetadataCache: false,
        otherBinaryMode: 'InlineBinary',
      },
    });
    expect(warnings).toEqual([]);
  });

  it('says that StorageCompression is not supported when it is asked', () => {
    loadJson({ StorageCompression: true });
    expect(warnings).toEqual([`"StorageCompression" in ${path.join(dir, 'config.json')} is not supported: files are stored uncompressed`]);
  });
});

describe('files', () => {
  it('accepts comments and trailing commas', () => {
    const file = write(
      'c.json',
      `// leading comment
      {
        /* block */ "HttpPort" : 8043, // trailing comment
        "DicomWeb" : { "Root" : "/dw/", },
      }`,
    );
    const config = load([file]);
    expect(config.httpPort).toBe(8043);
    expect(config.dicomWeb.root).toBe('/dw/');
  });

  it('reports a syntax error with file, line and column', () => {
    const file = write('bad.json', '{\n  "HttpPort": 8042,\n  "Name" "x"\n}');
    const err = configError(() => load([file]));
    expect(err.message).toContain(file);
    expect(err.message).toContain('line 3, column 10');
    expect(err.message).toContain('ColonExpected');
    expect(err.file).toBe(file);
  });

  it('refuses a file that is not a JSON object', () => {
    const file = write('array.json', '[1, 2]');
    expect(configError(() => load([file])).message).toContain(`${file} must contain a JSON object`);
    const empty = write('empty.json', '  // nothing\n');
    expect(configError(() => load([empty])).message).toContain(`${empty} must contain a JSON object`);
  });

  it('refuses a path that does not exist', () => {
    const missing = path.join(dir, 'nope.json');
    expect(configError(() => load([missing])).message).toContain(missing);
  });

  it('resolves relative file arguments against cwd', () => {
    write('sub/rel.json', '{ "HttpPort": 9000 }');
    expect(load(['sub/rel.json']).httpPort).toBe(9000);
  });

  it('merges the top-level keys of several files', () => {
    const a = write('a.json', '{ "HttpPort": 9001, "DicomWeb": { "Root": "/a/" } }');
    const b = write('b.json', '{ "Name": "merged", "Ohif": { "Enable": false } }');
    const config = load([a, b]);
    expect(config).toMatchObject({ httpPort: 9001, name: 'merged', dicomWeb: { root: '/a/' } });
    expect(config.ohifRoot).toBeUndefined();
    expect(config.sourceFiles).toEqual([a, b]);
  });

  it('refuses a top-level key defined in two files, as Orthanc does', () => {
    const a = write('a.json', '{ "HttpPort": 9001 }');
    const b = write('b.json', '{ "HttpPort": 9002 }');
    const err = configError(() => load([a, b]));
    expect(err.message).toContain('"HttpPort"');
    expect(err.message).toContain(a);
    expect(err.message).toContain(b);
    expect(err.key).toBe('HttpPort');
  });

  it('reads every *.json file of a directory, in name order', () => {
    const conf = path.join(dir, 'conf.d');
    write('conf.d/20-http.json', '{ "HttpPort": 9100 }');
    write('conf.d/10-name.JSON', '{ "Name": "from-dir" }');
    write('conf.d/readme.txt', 'not json {');
    write('conf.d/nested/ignored.json', '{ "DicomPort": 1 }');
    const config = load([conf]);
    expect(config.sourceFiles).toEqual([path.join(conf, '10-name.JSON'), path.join(conf, '20-http.json')]);
    expect(config).toMatchObject({ name: 'from-dir', httpPort: 9100, dicomPort: 4242 });
  });

  it('warns about an empty directory', () => {
    fs.mkdirSync(path.join(dir, 'empty'));
    load([path.join(dir, 'empty')]);
    expect(warnings.join('\n')).toContain('contains no .json file');
  });
});

describe('UserMetadata and UserContentType', () => {
  it('reads names and types in 1024..65535, with the MIME type of a content type', () => {
    const config = loadJson({ UserMetadata: { Sample: 1024, Last: 65535 }, UserContentType: { notes: 1024, report: [1025, 'application/pdf'] } });
    expect(config.userMetadata).toEqual({ Sample: 1024, Last: 65535 });
    expect(config.userContentTypes).toEqual({ notes: { type: 1024 }, report: { type: 1025, mime: 'application/pdf' } });
  });

  it('refuses types outside the user range and malformed entries, naming the key', () => {
    expect(configError(() => loadJson({ UserMetadata: { Sample: 1023 } })).key).toBe('UserMetadata.Sample');
    expect(configError(() => loadJson({ UserMetadata: { Sample: '1024' } })).key).toBe('UserMetadata.Sample');
    expect(configError(() => loadJson({ UserContentType: { notes: 65536 } })).key).toBe('UserContentType.notes');
    expect(configError(() => loadJson({ UserContentType: { report: [1025] } })).key).toBe('UserContentType.report');
    expect(configError(() => loadJson({ UserContentType: { report: [1025, 7] } })).key).toBe('UserContentType.report[1]');
  });
});

describe('paths', () => {
  it('resolves relative storage paths against the folder of the file that sets them', () => {
    const file = write('etc/gw.json', '{ "StorageDirectory": "data", "IndexDirectory": "../index", "HttpsCACertificates": "ca.pem" }');
    const config = load([file]);
    expect(config.storageDirectory).toBe(path.join(dir, 'etc', 'data'));
    expect(config.indexDirectory).toBe(path.join(dir, 'index'));
    expect(config.httpsCACertificates).toBe(path.join(dir, 'etc', 'ca.pem'));
  });

  it('defaults IndexDirectory to StorageDirectory', () => {
    const config = loadJson({ StorageDirectory: '/srv/dicom' });
    expect(config.indexDirectory).toBe('/srv/dicom');
  });

  it('refuses an empty StorageDirectory', () => {
    expect(configError(() => loadJson({ StorageDirectory: '' })).key).toBe('StorageDirectory');
  });
});

describe('DicomWeb roots', () => {
  it.each([
    ['dicom-web', '/dicom-web/'],
    ['/dicom-web', '/dicom-web/'],
    ['dicom-web/', '/dicom-web/'],
    ['/', '/'],
  ])('normalises Root %j to %j', (root, expected) => {
    expect(loadJson({ DicomWeb: { Root: root } }).dicomWeb.root).toBe(expected);
  });

  it.each([
    ['wado', '/wado'],
    ['/wado/', '/wado'],
    ['/a/b//', '/a/b'],
  ])('normalises WadoRoot %j to %j', (root, expected) => {
    expect(loadJson({ DicomWeb: { WadoRoot: root } }).dicomWeb.wadoRoot).toBe(expected);
  });

  it('refuses "/" as WadoRoot', () => {
    expect(configError(() => loadJson({ DicomWeb: { WadoRoot: '/' } })).key).toBe('DicomWeb.WadoRoot');
  });
});

describe('DicomWeb.Servers', () => {
  it('reads [url]', () => {
    const servers = loadJson({ DicomWeb: { Servers: { a: ['http://pacs/dicom-web'] } } }).dicomWeb.servers;
    expect(servers.a).toEqual({
      url: 'http://pacs/dicom-web/',
      httpHeaders: {},
      timeout: 0,
      hasDelete: false,
      chunkedTransfers: true,
      userProperties: {},
    });
  });

  it('reads [url, username, password]', () => {
    const servers = loadJson({ DicomWeb: { Servers: { a: ['https://pacs/dw/', 'bob', 'pw'] } } }).dicomWeb.servers;
    expect(servers.a).toMatchObject({ url: 'https://pacs/dw/', username: 'bob', password: 'pw' });
  });

  it('reads the object form, keeping other properties as user properties', () => {
    const servers = loadJson({
      DicomWeb: {
        Servers: {
          full: {
            Url: 'https://pacs/dw',
            Username: 'bob',
            Password: 'pw',
            HttpHeaders: { Authorization: 'Bearer t' },
            CertificateFile: 'c.pem',
            CertificateKeyFile: 'k.pem',
            CertificateKeyPassword: 'kp',
            Timeout: 30,
            HasDelete: true,
            ChunkedTransfers: false,
            Vendor: 'acme',
            Level: 3,
          },
          legacy: { URL: 'http://old/', HasDelete: '1', ChunkedTransfers: '0' },
        },
      },
    }).dicomWeb.servers;
    expect(servers.full).toEqual({
      url: 'https://pacs/dw/',
      username: 'bob',
      password: 'pw',
      httpHeaders: { Authorization: 'Bearer t' },
      certificateFile: 'c.pem',
      certificateKeyFile: 'k.pem',
      certificateKeyPassword: 'kp',
      timeout: 30,
      hasDelete: true,
      chunkedTransfers: false,
      userProperties: { Vendor: 'acme', Level: 3 },
    });
    expect(servers.legacy).toMatchObject({ url: 'http://old/', hasDelete: true, chunkedTransfers: false, userProperties: {} });
  });

  it.each([
    [['http://a', 'bob'], 'DicomWeb.Servers.s', 'the password is missing'],
    [[], 'DicomWeb.Servers.s', 'must be [url] or [url, username, password]'],
    [['ftp://a'], 'DicomWeb.Servers.s[0]', 'must be an http:// or https:// URL'],
    [{ Username: 'bob' }, 'DicomWeb.Servers.s.Url', 'is missing'],
    [{ Url: 'not a url' }, 'DicomWeb.Servers.s.Url', 'must be an http:// or https:// URL'],
    [{ Url: 'http://a', Timeout: -1 }, 'DicomWeb.Servers.s.Timeout', 'must be a non-negative integer'],
    [{ Url: 'http://a', HasDelete: 'maybe' }, 'DicomWeb.Servers.s.HasDelete', 'must be true or false'],
    [{ Url: 'http://a', HttpHeaders: ['x'] }, 'DicomWeb.Servers.s.HttpHeaders', 'must be a JSON object'],
    [{ Url: 'http://a', Password: 'p' }, 'DicomWeb.Servers.s.Password', 'without a user name'],
    ['http://a', 'DicomWeb.Servers.s', 'must be a JSON object'],
  ])('refuses %j', (entry, key, text) => {
    const err = configError(() => loadJson({ DicomWeb: { Servers: { s: entry } } }));
    expect(err.key).toBe(key);
    expect(err.message).toContain(`"${key}"`);
    expect(err.message).toContain(path.join(dir, 'config.json'));
    expect(err.message).toContain(text);
  });
});

describe('OrthancPeers', () => {
  it('reads [url], [url, user, password] and the object form', () => {
    const peers = loadJson({
      OrthancPeers: {
        short: ['http://peer:8042'],
        creds: ['http://peer:8042/', 'u', 'p'],
        long: { Url: 'https://peer', Username: 'u', Password: 'p', HttpHeaders: { 'X-A': 'b' }, Pkcs11: false, Extra: 1 },
      },
    }).orthancPeers;
    expect(peers.short).toEqual({ url: 'http://peer:8042/', httpHeaders: {} });
    expect(peers.creds).toEqual({ url: 'http://peer:8042/', username: 'u', password: 'p', httpHeaders: {} });
    expect(peers.long).toEqual({ url: 'https://peer/', username: 'u', password: 'p', httpHeaders: { 'X-A': 'b' }, userProperties: { Extra: '1' } });
  });

  it('refuses names Orthanc refuses', () => {
    const err = configError(() => loadJson({ OrthancPeers: { 'bad name': ['http://a'] } }));
    expect(err.message).toContain('"OrthancPeers.bad name"');
  });

  it('treats empty credentials as none', () => {
    expect(loadJson({ OrthancPeers: { p: ['http://a', '', ''] } }).orthancPeers.p).toEqual({ url: 'http://a/', httpHeaders: {} });
  });
});

describe('DicomModalities', () => {
  it('reads [AET, host, port] and [AET, host, port, manufacturer]', () => {
    const modalities = loadJson({
      DicomModalities: { ct: ['CT1', '10.0.0.1', 104], mr: ['MR1', 'mr.local', '11112', 'GE'] },
    }).dicomModalities;
    const allowed = { allowEcho: true, allowFind: true, allowMove: true, allowStore: true };
    expect(modalities.ct).toEqual({ aet: 'CT1', host: '10.0.0.1', port: 104, manufacturer: 'Generic', ...allowed });
    expect(modalities.mr).toEqual({ aet: 'MR1', host: 'mr.local', port: 11112, manufacturer: 'GE', ...allowed });
  });

  it('reads the object form with its Allow* flags', () => {
    const modalities = loadJson({
      DicomModalities: {
        pacs: { AET: 'PACS', Host: 'pacs', Port: 4242, Manufacturer: 'Vitrea', AllowEcho: false, AllowStore: false, AllowGet: true },
      },
    }).dicomModalities;
    expect(modalities.pacs).toEqual({
      aet: 'PACS',
      host: 'pacs',
      port: 4242,
      manufacturer: 'Vitrea',
      allowEcho: false,
      allowFind: true,
      allowMove: true,
      allowStore: false,
    });
  });

  it('maps obsolete manufacturers as Orthanc 1.10 does, with a warning', () => {
    const m = loadJson({ DicomModalities: { a: ['A', 'h', 104, 'AgfaImpax'], b: ['B', 'h', 104, 'ClearCanvas'] } }).dicomModalities;
    expect(m.a.manufacturer).toBe('GenericNoWildcardInDates');
    expect(m.b.manufacturer).toBe('Generic');
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toContain('DicomModalities.a[3]');
  });

  it.each([
    [['A', 'h'], 'DicomModalities.m', 'must be [AET, host, port]'],
    [['A', 'h', 0], 'DicomModalities.m[2]', 'must be an integer from 1 to 65535 (got 0)'],
    [['A', 'h', 'x104'], 'DicomModalities.m[2]', 'must be an integer from 1 to 65535 (got "x104")'],
    [['A', 'h', 104, 'Acme'], 'DicomModalities.m[3]', 'must be one of "Generic"'],
    [['THIS-AET-IS-TOO-LONG', 'h', 104], 'DicomModalities.m[0]', 'must be an AE title of 1 to 16 characters'],
    [{ AET: 'A', Host: 'h' }, 'DicomModalities.m.Port', 'is missing'],
    [{ AET: 'A', Host: 'h', Port: 104, AllowFind: 'no' }, 'DicomModalities.m.AllowFind', 'must be true or false'],
  ])('refuses %j', (entry, key, text) => {
    const err = configError(() => loadJson({ DicomModalities: { m: entry } }));
    expect(err.key).toBe(key);
    expect(err.message).toContain(text);
  });
});

describe('validation messages name the key and the file', () => {
  it('matches the documented format', () => {
    const file = write('x.json', '{ "HttpPort": "abc" }');
    expect(configError(() => load([file])).message).toBe(
      `Invalid configuration: "HttpPort" in ${file} must be an integer from 1 to 65535 (got "abc")`,
    );
  });

  it.each([
    [{ HttpPort: 0 }, 'HttpPort', 'must be an integer from 1 to 65535 (got 0)'],
    [{ HttpPort: 65536 }, 'HttpPort', 'must be an integer from 1 to 65535 (got 65536)'],
    [{ HttpPort: 80.5 }, 'HttpPort', 'must be an integer from 1 to 65535 (got 80.5)'],
    [{ DicomPort: -4 }, 'DicomPort', 'must be an integer from 1 to 65535'],
    [{ MaximumStorageSize: -1 }, 'MaximumStorageSize', 'must be a non-negative integer (got -1)'],
    [{ MaximumPatientCount: '3' }, 'MaximumPatientCount', 'must be a non-negative integer (got "3")'],
    [{ HttpTimeout: null }, 'HttpTimeout', 'must be a non-negative integer (got null)'],
    [{ RemoteAccessAllowed: 'yes' }, 'RemoteAccessAllowed', 'must be true or false (got "yes")'],
    [{ Name: 42 }, 'Name', 'must be a string (got 42)'],
    [{ ReadOnly: 'true' }, 'ReadOnly', 'must be true or false (got "true")'],
    [{ DicomWeb: { QidoMaxResults: 0 } }, 'DicomWeb.QidoMaxResults', 'must be an integer from 1'],
    [{ DicomAet: '' }, 'DicomAet', 'must be an AE title'],
    [{ DefaultEncoding: 'Klingon' }, 'DefaultEncoding', 'must be one of "Ascii", "Utf8", "Latin1"'],
    [{ RegisteredUsers: ['alice'] }, 'RegisteredUsers', 'must be a JSON object'],
    [{ OrthancPeers: 'x' }, 'OrthancPeers', 'must be a JSON object'],
    [{ DicomWeb: true }, 'DicomWeb', 'must be a JSON object ({ ... }) (got true)'],
    [{ DicomWeb: { StowMaxInstances: -1 } }, 'DicomWeb.StowMaxInstances', 'must be a non-negative integer (got -1)'],
    [{ DicomWeb: { StowMaxSize: 1.5 } }, 'DicomWeb.StowMaxSize', 'must be a non-negative integer (got 1.5)'],
    [{ DicomWeb: { Enable: 1 } }, 'DicomWeb.Enable', 'must be true or false (got 1)'],
    [{ DicomWeb: { Root: 5 } }, 'DicomWeb.Root', 'must be a string (got 5)'],
    [{ DicomWeb: { StudiesMetadata: 'Some' } }, 'DicomWeb.StudiesMetadata', 'must be one of "Full", "MainDicomTags", "Extrapolate"'],
    [{ DicomWeb: { OtherBinaryMode: 'ArrayOfValues' } }, 'DicomWeb.OtherBinaryMode', 'must be one of "BulkDataURI", "InlineBinary"'],
    [{ Core: { Url: 'ftp://orthanc' } }, 'Core.Url', 'must be an http:// or https:// URL (got "ftp://orthanc")'],
    [{ Core: 'http://orthanc' }, 'Core', 'must be a JSON object'],
    [{ Ohif: { Enable: 'no' } }, 'Ohif.Enable', 'must be true or false'],
  ])('%j', (content, key, text) => {
    const err = configError(() => loadJson(content));
    const file = path.join(dir, 'config.json');
    expect(err.message).toContain(`Invalid configuration: "${key}" in ${file} ${text}`);
    expect(err.key).toBe(key);
    expect(err.file).toBe(file);
  });

  it('names the file the key came from when several files are loaded', () => {
    const a = write('a.json', '{ "HttpPort": 8000 }');
    const b = write('b.json', '{ "DicomWeb": { "StowMaxSize": -5 } }');
    const err = configError(() => load([a, b]));
    expect(err.message).toContain(`"DicomWeb.StowMaxSize" in ${b}`);
  });
});

describe('Core and Ohif', () => {
  it('reads Core, dropping trailing slashes from its URL', () => {
    const config = loadJson({ Core: { Url: 'http://127.0.0.1:8043/', Username: 'orthanc', Password: 'pw' } });
    expect(config.core).toEqual({ url: 'http://127.0.0.1:8043', username: 'orthanc', password: 'pw' });
  });

  it('keeps the embedded core when Core.Url is empty (e.g. an unset variable)', () => {
    expect(loadJson({ Core: { Url: '' } }).core).toBeUndefined();
  });

  it('reads the Ohif root, or no root when disabled', () => {
    expect(loadJson({ Ohif: { Root: 'viewer' } }).ohifRoot).toBe('/viewer/');
    expect(loadJson({ Ohif: { Enable: false } }).ohifRoot).toBeUndefined();
  });
});

describe('unknown keys', () => {
  it('warns with the key and the file, then goes on', () => {
    const file = write(
      'w.json',
      JSON.stringify({
        HttpPortt: 1,
        DicomWeb: { Rooot: '/x/' },
        Core: { Url: 'http://a', Token: 'x' },
        Ohif: { Path: '/o/' },
      }),
    );
    const config = load([file]);
    expect(config.httpPort).toBe(8042);
    expect(warnings).toEqual([
      `Unknown configuration key "DicomWeb.Rooot" in ${file}: ignored`,
      `Unknown configuration key "Core.Token" in ${file}: ignored`,
      `Unknown configuration key "Ohif.Path" in ${file}: ignored`,
      `Unknown configuration key "HttpPortt" in ${file}: ignored`,
    ]);
  });

  it('stays quiet about Orthanc keys we do not use', () => {
    loadJson({
      StorageCompression: false,
      Plugins: ['/usr/share/orthanc/plugins'],
      ConcurrentJobs: 4,
      HttpServerEnabled: true,
      DicomWeb: { ServersInDatabase: false, MetadataWorkerThreadsCount: 4 },
    });
    expect(warnings).toEqual([]);
  });

  it('says that StorageCompression is not supported when it is asked', () => {
    loadJson({ StorageCompression: true });
    expect(warnings).toEqual([`"StorageCompression" in ${path.join(dir, 'config.json')} is not supported: files are stored uncompressed`]);
  });
});

describe('secrets', () => {
  const SECRET = 'S3cr3t-Value-987';

  /** Every message produced while loading content (the error, if any, and the warnings). */
  function messages(content: unknown, env: Record<string, string> = {}): string {
    let error = '';
    try {
      loadJson(content, { env });
    } catch (err) {
      error = (err as Error).message;
    }
    return [error, ...warnings].join('\n');
  }

  it.each([
    ['a non-string registered password', { RegisteredUsers: { bob: 987654321 } }, '987654321'],
    ['a bad server password', { DicomWeb: { Servers: { s: ['http://a', 'u', 987654321] } } }, '987654321'],
    ['a server password without user', { DicomWeb: { Servers: { s: { Url: 'http://a', Password: SECRET } } } }, SECRET],
    ['a short form missing its password', { DicomWeb: { Servers: { s: ['http://a', SECRET] } } }, SECRET],
    ['a bad certificate key password', { OrthancPeers: { p: { Url: 'http://a', CertificateKeyPassword: 987654321 } } }, '987654321'],
    ['a bad header value', { OrthancPeers: { p: { Url: 'http://a', HttpHeaders: { Authorization: 987654321 } } } }, '987654321'],
    ['a core password without user', { Core: { Url: 'http://a', Password: SECRET } }, SECRET],
    ['credentials in a bad URL', { Core: { Url: `ftp://bob:${SECRET}@host/` } }, SECRET],
    ['a bad proxy', { HttpProxy: 987654321 }, '987654321'],
  ])('never shows %s', (_label, content, secret) => {
    const text = messages(content);
    expect(text).toContain('Invalid configuration');
    expect(text).not.toContain(secret);
  });

  it('keeps credentials out of the message for a URL with user info', () => {
    expect(messages({ Core: { Url: `ftp://bob:${SECRET}@host/` } })).toContain('ftp://***@host/');
  });

  it('never shows substituted values in warnings', () => {
    const text = messages({ RegisteredUsers: { bob: '${BOB_PASSWORD}' }, Unknown: '${BOB_PASSWORD}' }, { BOB_PASSWORD: SECRET });
    expect(text).not.toContain(SECRET);
  });
});

describe('environment variables', () => {
  it('substitutes ${VAR} and ${VAR:-fallback} in string values at any depth', () => {
    const config = loadJson(
      {
        Name: 'gw-${SITE}',
        StorageDirectory: '${DATA:-/srv/fallback}',
        RegisteredUsers: { admin: '${ADMIN_PASSWORD}' },
        DicomWeb: { Servers: { remote: ['${PACS_URL}', 'user', '${PACS_PASSWORD}'] } },
        Core: { Url: '${CORE_URL:-}' },
      },
      { env: { SITE: 'north', ADMIN_PASSWORD: 'pw1', PACS_URL: 'https://pacs/dw/', PACS_PASSWORD: 'pw2' } },
    );
    expect(config.name).toBe('gw-north');
    expect(config.storageDirectory).toBe('/srv/fallback');
    expect(config.registeredUsers).toEqual({ admin: 'pw1' });
    expect(config.dicomWeb.servers.remote).toMatchObject({ url: 'https://pacs/dw/', username: 'user', password: 'pw2' });
    expect(config.core).toBeUndefined();
    expect(warnings).toEqual([]);
  });

  it('uses an empty string for an unset variable, as Orthanc does, and warns', () => {
    const config = loadJson({ Name: 'a${NOPE}b', DicomWeb: { Host: '${NOPE_HOST}' } });
    const file = path.join(dir, 'config.json');
    expect(config.name).toBe('ab');
    expect(config.dicomWeb.host).toBeUndefined();
    expect(warnings).toEqual([
      `Environment variable "NOPE" used by "Name" in ${file} is not set: using ""`,
      `Environment variable "NOPE_HOST" used by "DicomWeb.Host" in ${file} is not set: using ""`,
    ]);
  });

  it('leaves values without ${...} and non-string values alone', () => {
    const config = loadJson({ Name: '$HOME and {x}', HttpPort: 8044 }, { env: { HOME: '/root' } });
    expect(config.name).toBe('$HOME and {x}');
    expect(config.httpPort).toBe(8044);
  });

  it('reads process.env by default', () => {
    process.env.LOAD_CONFIG_TEST_NAME = 'from-env';
    try {
      const file = write('env.json', '{ "Name": "${LOAD_CONFIG_TEST_NAME}" }');
      expect(loadConfig([file], { warn: () => undefined }).name).toBe('from-env');
    } finally {
      delete process.env.LOAD_CONFIG_TEST_NAME;
    }
  });
});
