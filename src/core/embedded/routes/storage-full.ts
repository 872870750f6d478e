import type { ErrorRequestHandler } from 'express';
import { CoreError } from '../../native-model';
import { isOutOfSpace } from '../storage-area';

/**
 * A native upload that met a full disk (the body written to tmp/, the index) is answered as a full store (507,
 * Orthanc's "The file storage is full"), not as an internal error. Whatever was half-written is removed by its writer.
 */
export const storageFullErrors: ErrorRequestHandler = (error: unknown, _req, _res, next) => {
  next(isOutOfSpace(error) ? new CoreError(507, 'The file storage is full', (error as Error).message) : error);
};
