/**
 * Environment contract between `DynamoCounter` and its handler (DESIGN.md §4).
 * Plain constants only: imported by both the construct and the bundled handler.
 */
export const DYNAMO_ENV = {
  /** Name of the counters table (partition key `id`, string). Required. */
  TABLE_NAME: 'COUNTER_TABLE_NAME',
  /**
   * Optional endpoint override, honoured by the AWS SDK itself; set only for
   * local engines (DynamoDB Local). Never set by the construct.
   */
  ENDPOINT: 'AWS_ENDPOINT_URL_DYNAMODB',
  /** Optional: milliseconds one DynamoDB call may take before a 503 (default 2000). */
  REQUEST_TIMEOUT_MS: 'DYNAMO_REQUEST_TIMEOUT_MS',
} as const;

/** Attribute names of a counter item. `counter` is a DynamoDB reserved word: always aliased. */
export const DYNAMO_ATTRIBUTES = { ID: 'id', COUNTER: 'counter' } as const;
