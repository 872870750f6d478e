/**
 * DICOM JSON → PS3.19 Annex A Native DICOM Model XML, for multipart/related; type="application/dicom+xml"
 * answers. The XML is derived from the JSON encoder's output so both representations always agree.
 */
import type { DicomJsonAttribute, DicomJsonDataset, DicomJsonValue, PersonNameComponents } from './dicom-json';
import { isPrivateTag, privateCreatorTagOf, tagToKeyword } from './dictionary';

export const NATIVE_DICOM_MODEL_NAMESPACE = 'http://dicom.nema.org/PS3.19/models/NativeDICOM';

const PN_GROUPS = ['Alphabetic', 'Ideographic', 'Phonetic'] as const;
const PN_COMPONENTS = ['FamilyName', 'GivenName', 'MiddleName', 'NamePrefix', 'NameSuffix'] as const;

/** Characters XML 1.0 cannot carry at all (C0 controls but TAB/LF/CR, lone surrogates, FFFE/FFFF). */
// eslint-disable-next-line no-control-regex
const NOT_XML = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

const TEXT_ESCAPES: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '\r': '&#13;' };
const ATTRIBUTE_ESCAPES: Readonly<Record<string, string>> = {
  ...TEXT_ESCAPES,
  '"': '&quot;',
  '\n': '&#10;',
  '\t': '&#9;',
};

/** Escape element text; CR is kept as a reference because parsers normalise a raw CR away. */
export function escapeXmlText(text: string): string {
  return text.replace(NOT_XML, '\uFFFD').replace(/[&<>\r]/g, (c) => TEXT_ESCAPES[c]);
}

export function escapeXmlAttribute(text: string): string {
  return text.replace(NOT_XML, '\uFFFD').replace(/[&<>"\r\n\t]/g, (c) => ATTRIBUTE_ESCAPES[c]);
}

function element(name: string, attributes: ReadonlyArray<[string, string]>, content: string): string {
  const attrs = attributes.map(([key, value]) => ` ${key}="${escapeXmlAttribute(value)}"`).join('');
  return content === '' ? `<${name}${attrs}/>` : `<${name}${attrs}>${content}</${name}>`;
}

function personNameGroupXml(name: string, group: string): string {
  const parts = group.split('^');
  const components = PN_COMPONENTS.map((component, index) => {
    const text = parts[index] ?? '';
    return text === '' ? '' : element(component, [], escapeXmlText(text));
  }).join('');
  return element(name, [], components);
}

function personNameXml(value: DicomJsonValue, number: number): string {
  const name = (value && typeof value === 'object' ? value : {}) as PersonNameComponents;
  const groups = PN_GROUPS.map((key) => {
    const group = name[key];
    return typeof group === 'string' && group !== '' ? personNameGroupXml(key, group) : '';
  }).join('');
  return element('PersonName', [['number', String(number)]], groups);
}

function valueXml(value: DicomJsonValue, number: number): string {
  const text = value === null || value === undefined || typeof value === 'object' ? '' : String(value);
  return element('Value', [['number', String(number)]], escapeXmlText(text));
}

/** The creator of a private data element, from (gggg,00xx) in the same data set, if present. */
function privateCreatorOf(tag: string, dataset: DicomJsonDataset): string | undefined {
  const creatorTag = privateCreatorTagOf(tag);
  const creator = creatorTag ? dataset[creatorTag]?.Value?.[0] : undefined;
  return typeof creator === 'string' ? creator : undefined;
}

function attributeContent(attribute: DicomJsonAttribute): string {
  if (typeof attribute.BulkDataURI === 'string') return element('BulkData', [['uri', attribute.BulkDataURI]], '');
  if (typeof attribute.InlineBinary === 'string') return element('InlineBinary', [], attribute.InlineBinary);
  const values = attribute.Value ?? [];
  if (attribute.vr === 'SQ') {
    return values
      .map((item, index) => element('Item', [['number', String(index + 1)]], datasetXml((item ?? {}) as DicomJsonDataset)))
      .join('');
  }
  if (attribute.vr === 'PN') return values.map((v, index) => personNameXml(v, index + 1)).join('');
  return values.map((v, index) => valueXml(v, index + 1)).join('');
}

function datasetXml(dataset: DicomJsonDataset): string {
  return Object.keys(dataset)
    .sort()
    .map((tag) => {
      const attribute = dataset[tag];
      const attributes: Array<[string, string]> = [
        ['tag', tag],
        ['vr', attribute.vr],
      ];
      const keyword = tagToKeyword(tag);
      if (keyword) attributes.push(['keyword', keyword]);
      if (isPrivateTag(tag)) {
        const creator = privateCreatorOf(tag, dataset);
        if (creator !== undefined) attributes.push(['privateCreator', creator]);
      }
      return element('DicomAttribute', attributes, attributeContent(attribute));
    })
    .join('');
}

/** One Native DICOM Model document for one data set. */
export function dicomJsonToXml(dataset: DicomJsonDataset): string {
  return (
    '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<NativeDicomModel xmlns="${NATIVE_DICOM_MODEL_NAMESPACE}">` +
    datasetXml(dataset) +
    '</NativeDicomModel>\n'
  );
}
