import { allowedPrevious } from '../../../runtime/store';

/** A counter document: the counter id is the `_id`. */
export interface CounterDocument {
  _id: string;
  counter: number;
}

/** A key record (see `DOCDB_KEY_FIELDS`): the key is the `_id`. */
export interface KeyRecord {
  _id: string;
  id: string;
  by: number;
  /** The value the keyed change produced. */
  counter?: number;
  expiresAt: Date;
  /** The token of the request that recorded the key (records of earlier releases have none). */
  request?: string;
}

/** What a change may start from, as a filter on the counter field: `lowest ≤ value ≤ highest`. */
export function boundFilter(by: number, maximum?: number): { counter: { $gte: number; $lte: number } } {
  const { lowest, highest } = allowedPrevious(by, maximum);
  return { counter: { $gte: lowest, $lte: highest } };
}
