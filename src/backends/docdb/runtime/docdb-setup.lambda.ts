import { readDocDbConfig } from './docdb-config';
import { docdbSetup, SETUP_TIMEOUTS } from './docdb-setup';
import { createSetupHandler } from '../../../runtime/custom-resource';

// Init phase: configuration is read and validated once per container, with
// the setup's longer timeouts.
const config = readDocDbConfig(process.env, SETUP_TIMEOUTS);

export const handler = createSetupHandler(docdbSetup(config));
