import { readTiDbConfig } from './tidb-config';
import { tidbSetup } from './tidb-setup';
import { createSetupHandler } from '../../../runtime/custom-resource';

// Init phase: configuration is read and validated once per container.
const config = readTiDbConfig(process.env);

export const handler = createSetupHandler(tidbSetup(config));
