import { readMomentoConnection } from './momento-config';
import { momentoSetup } from './momento-setup';
import { createSetupHandler } from '../../../runtime/custom-resource';

// Init phase: where to connect (the secret's ARN, or a local server).
const connection = readMomentoConnection(process.env);

export const handler = createSetupHandler(momentoSetup(connection));
