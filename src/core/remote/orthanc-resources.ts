/**
 * Orthanc's resource JSON, made to hold every field `Resource` promises: older cores have no `Labels`,
 * and a core asked for less (ResponseContent) may leave children or parents out.
 */
import type { InstanceResource, Resource, ResourceLevel } from '../native-model';

type Json = Record<string, unknown>;

const array = (value: unknown): unknown[] => (Array.isArray(value) ? value : []);
const object = (value: unknown): Json => (typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Json) : {});

export function normalizeResource(raw: unknown): Resource {
  const json = object(raw);
  const resource: Json = { ...json, MainDicomTags: object(json.MainDicomTags), Labels: array(json.Labels) };
  switch (json.Type as ResourceLevel) {
    case 'Patient':
      resource.Studies = array(json.Studies);
      break;
    case 'Study':
      resource.Series = array(json.Series);
      resource.PatientMainDicomTags = object(json.PatientMainDicomTags);
      resource.ParentPatient = json.ParentPatient ?? '';
      break;
    case 'Series':
      resource.Instances = array(json.Instances);
      resource.ParentStudy = json.ParentStudy ?? '';
      resource.ExpectedNumberOfInstances = json.ExpectedNumberOfInstances ?? null;
      resource.Status = json.Status ?? 'Unknown';
      break;
    case 'Instance':
      resource.ParentSeries = json.ParentSeries ?? '';
      resource.IndexInSeries = json.IndexInSeries ?? null;
      break;
  }
  if (json.Type !== 'Instance') {
    resource.IsStable = json.IsStable ?? false;
    resource.LastUpdate = json.LastUpdate ?? '';
  }
  return resource as unknown as Resource;
}

/** The parent's identifier of a resource ('' for a patient). */
export function parentOf(resource: Resource): string {
  switch (resource.Type) {
    case 'Patient':
      return '';
    case 'Study':
      return resource.ParentPatient;
    case 'Series':
      return resource.ParentStudy;
    case 'Instance':
      return resource.ParentSeries;
  }
}

/** Children identifiers of a resource (none for an instance). */
export function childrenOf(resource: Resource): string[] {
  switch (resource.Type) {
    case 'Patient':
      return resource.Studies;
    case 'Study':
      return resource.Series;
    case 'Series':
      return resource.Instances;
    case 'Instance':
      return [];
  }
}

/**
 * Instances series by series (in the order the core lists them), each series in IndexInSeries order
 * (instances without an index last, in the core's order).
 */
export function sortInstances(instances: InstanceResource[]): InstanceResource[] {
  const seriesOrder = new Map<string, number>();
  for (const instance of instances) if (!seriesOrder.has(instance.ParentSeries)) seriesOrder.set(instance.ParentSeries, seriesOrder.size);
  return instances
    .map((instance, position) => ({ instance, position }))
    .sort(
      (a, b) =>
        (seriesOrder.get(a.instance.ParentSeries) ?? 0) - (seriesOrder.get(b.instance.ParentSeries) ?? 0) ||
        (a.instance.IndexInSeries ?? Infinity) - (b.instance.IndexInSeries ?? Infinity) ||
        a.position - b.position,
    )
    .map((entry) => entry.instance);
}
