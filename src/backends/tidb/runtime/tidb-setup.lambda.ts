// Placeholder until this backend's issue lands: the bundle must exist for `projen bundle`.
export const handler = async (): Promise<never> => {
  throw new Error('not implemented yet');
};
