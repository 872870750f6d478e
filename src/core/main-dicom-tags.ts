import type { ResourceLevel } from './native-model';

/**
 * The attributes a core indexes, per level, as [tag, keyword].
 * `orthanc` lists Orthanc 1.10's main DICOM tags (shown in MainDicomTags); `extra` are further attributes
 * that QIDO-RS must match on or return by default (PS3.18 Table 10.6.1-5), indexed so searches stay fast.
 */
export interface LevelTags {
  orthanc: ReadonlyArray<readonly [string, string]>;
  extra: ReadonlyArray<readonly [string, string]>;
}

export const LEVEL_TAGS: Record<ResourceLevel, LevelTags> = {
  Patient: {
    orthanc: [
      ['00100010', 'PatientName'],
      ['00100020', 'PatientID'],
      ['00100030', 'PatientBirthDate'],
      ['00100040', 'PatientSex'],
      ['00101000', 'OtherPatientIDs'],
    ],
    extra: [
      ['00100021', 'IssuerOfPatientID'],
      ['00100032', 'PatientBirthTime'],
    ],
  },
  Study: {
    orthanc: [
      ['00080020', 'StudyDate'],
      ['00080030', 'StudyTime'],
      ['00200010', 'StudyID'],
      ['00081030', 'StudyDescription'],
      ['00080050', 'AccessionNumber'],
      ['0020000D', 'StudyInstanceUID'],
      ['00321060', 'RequestedProcedureDescription'],
      ['00080080', 'InstitutionName'],
      ['00321032', 'RequestingPhysician'],
      ['00080090', 'ReferringPhysicianName'],
    ],
    extra: [
      ['00080005', 'SpecificCharacterSet'],
      ['00080201', 'TimezoneOffsetFromUTC'],
      ['00081060', 'NameOfPhysiciansReadingStudy'],
      ['00401001', 'RequestedProcedureID'],
    ],
  },
  Series: {
    orthanc: [
      ['00080021', 'SeriesDate'],
      ['00080031', 'SeriesTime'],
      ['00080060', 'Modality'],
      ['00080070', 'Manufacturer'],
      ['00081010', 'StationName'],
      ['0008103E', 'SeriesDescription'],
      ['00180015', 'BodyPartExamined'],
      ['00180024', 'SequenceName'],
      ['00181030', 'ProtocolName'],
      ['00200011', 'SeriesNumber'],
      ['00181090', 'CardiacNumberOfImages'],
      ['00201002', 'ImagesInAcquisition'],
      ['00200105', 'NumberOfTemporalPositions'],
      ['00541081', 'NumberOfSlices'],
      ['00540101', 'NumberOfTimeSlices'],
      ['0020000E', 'SeriesInstanceUID'],
      ['00200037', 'ImageOrientationPatient'],
      ['00541000', 'SeriesType'],
      ['00081070', 'OperatorsName'],
      ['00400254', 'PerformedProcedureStepDescription'],
      ['00181400', 'AcquisitionDeviceProcessingDescription'],
      ['00180010', 'ContrastBolusAgent'],
    ],
    extra: [
      ['00400244', 'PerformedProcedureStepStartDate'],
      ['00400245', 'PerformedProcedureStepStartTime'],
      ['00400253', 'PerformedProcedureStepID'],
    ],
  },
  Instance: {
    orthanc: [
      ['00080012', 'InstanceCreationDate'],
      ['00080013', 'InstanceCreationTime'],
      ['00200012', 'AcquisitionNumber'],
      ['00541330', 'ImageIndex'],
      ['00200013', 'InstanceNumber'],
      ['00280008', 'NumberOfFrames'],
      ['00200100', 'TemporalPositionIdentifier'],
      ['00080018', 'SOPInstanceUID'],
      ['00200032', 'ImagePositionPatient'],
      ['00204000', 'ImageComments'],
      ['00200037', 'ImageOrientationPatient'],
    ],
    extra: [
      ['00080016', 'SOPClassUID'],
      ['00280010', 'Rows'],
      ['00280011', 'Columns'],
      ['00280100', 'BitsAllocated'],
      ['00080008', 'ImageType'],
      ['00080023', 'ContentDate'],
      ['00080033', 'ContentTime'],
    ],
  },
};

export const LEVELS: readonly ResourceLevel[] = ['Patient', 'Study', 'Series', 'Instance'];

export function levelIndex(level: ResourceLevel): number {
  return LEVELS.indexOf(level);
}

/** All tags indexed at a level, Orthanc's first. */
export function indexedTags(level: ResourceLevel): ReadonlyArray<readonly [string, string]> {
  return [...LEVEL_TAGS[level].orthanc, ...LEVEL_TAGS[level].extra];
}

/** The level whose index holds a tag (the first, from patient down), or undefined when no level indexes it. */
export function levelOfTag(tag: string): ResourceLevel | undefined {
  return LEVELS.find((level) => indexedTags(level).some(([t]) => t === tag));
}

/** The DICOM identifier of each level. */
export const LEVEL_UID_TAG: Record<ResourceLevel, string> = {
  Patient: '00100020',
  Study: '0020000D',
  Series: '0020000E',
  Instance: '00080018',
};

/** Orthanc's URL segment for each level. */
export const LEVEL_PATH: Record<ResourceLevel, string> = {
  Patient: 'patients',
  Study: 'studies',
  Series: 'series',
  Instance: 'instances',
};
