// Runs in every test file (jest setupFilesAfterEach): close the stores of
// every bundled-handler container the file loaded, so jest can exit without
// open handles.
import { closeContainers } from '../../local/lambda-container';

afterAll(async () => {
  await closeContainers();
});
