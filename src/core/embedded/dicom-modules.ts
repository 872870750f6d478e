/**
 * The attributes Orthanc 1.10 returns for GET /{level}/{id}/module (its DicomTag::AddTagsForModule):
 * the Patient, General Study, General Series and SOP Common modules of PS3.3.
 */
import type { ResourceLevel } from '../native-model';

const PATIENT = [
  '00100010', '00100020', '00100030', '00100040', '00081120', '00100032', '00101000', '00101001', '00102160', '00104000',
  '00102201', '00102203', '00102210', '00102292', '00102293', '00102294', '00102297', '00102298', '00102299', '00120062',
  '00120063', '00120064', '00100021', '00100024',
];
const STUDY = [
  '0020000D', '00080020', '00080030', '00080090', '00080096', '00200010', '00080050', '00080051', '00081030', '00081048',
  '00081049', '00081060', '00081062', '00321034', '00081110', '00081032', '00401012',
];
const SERIES = [
  '00080060', '0020000E', '00200011', '00200060', '00080021', '00080031', '00081050', '00081052', '00181030', '0008103E',
  '0008103F', '00081070', '00081072', '00081111', '00081250', '00180015', '00185100', '00280108', '00280109', '00400275',
  '00102210', '00400253', '00400244', '00400245', '00400254', '00400260', '00400280',
];
const INSTANCE = [
  '00080016', '00080018', '00080005', '00080012', '00080013', '00080014', '0008001A', '0008001B', '00080110', '00080201',
  '0018A001', '00200013', '01000410', '01000420', '04000561', '04000500', '00880140', '04000562', '0040A390', '00209161',
  '00209162', '00209228', '00209229', '00200052',
];

const MODULES: Record<ResourceLevel, ReadonlySet<string>> = {
  Patient: new Set(PATIENT.map(orthancKey)),
  Study: new Set(STUDY.map(orthancKey)),
  Series: new Set(SERIES.map(orthancKey)),
  Instance: new Set(INSTANCE.map(orthancKey)),
};

function orthancKey(tag: string): string {
  return `${tag.slice(0, 4)},${tag.slice(4)}`.toLowerCase();
}

/** Does the "gggg,eeee" key belong to the module of this level? */
export function inModule(level: ResourceLevel, key: string): boolean {
  return MODULES[level].has(key);
}
