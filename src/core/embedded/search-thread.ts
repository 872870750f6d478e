/**
 * Entry of a search thread (started by search-threads.ts from the built code): the index opened for reading, and
 * one answer per search asked, with the core's error status when the search is refused.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { getDefaultEncoding, setDefaultEncoding } from '../../dicom/charset';
import { CoreError } from '../native-model';
import { IndexReader } from './index-reader';
import { openIndexForReading } from './schema';
import { StorageArea } from './storage-area';
import type { SearchAsked, SearchAnswered, SearchThreadData } from './search-threads';

const { indexDirectory, storageDirectory } = workerData as SearchThreadData;
const reader = new IndexReader(openIndexForReading(indexDirectory), new StorageArea(storageDirectory));

parentPort?.on('message', ({ id, request, defaultEncoding }: SearchAsked) => {
  if (defaultEncoding !== getDefaultEncoding()) setDefaultEncoding(defaultEncoding);
  let answer: SearchAnswered;
  try {
    answer = { id, resources: reader.find(request) };
  } catch (error) {
    const status = error instanceof CoreError ? error.httpStatus : 500;
    answer = { id, error: { status, message: (error as Error).message, details: error instanceof CoreError ? error.details : undefined } };
  }
  parentPort?.postMessage(answer);
});
