import { MongoClient, MongoServerError } from 'mongodb';
import { DocDbCredentials } from './docdb-client';

/** DocumentDB and MongoDB keep users in `admin`. */
const USER_DATABASE = 'admin';
/** "User already exists" (MongoDB 4.4+: 51003; older servers: DuplicateKey). */
const USER_EXISTS = new Set([51003, 11000]);

/**
 * Creates the application user the counter function logs in as, with
 * `readWrite` on the counter database only, or, if it exists, sets its
 * password and roles to these. Idempotent: run on every Create and Update,
 * so a changed secret or database name reaches the cluster. The password is
 * sent only inside the command, over the cluster's TLS connection.
 */
export async function ensureAppUser(adminClient: MongoClient, user: DocDbCredentials, database: string): Promise<'created' | 'updated'> {
  const admin = adminClient.db(USER_DATABASE);
  const roles = [{ role: 'readWrite', db: database }];
  const existing = await admin.command({ usersInfo: { user: user.username, db: USER_DATABASE } });
  if (!(existing.users as unknown[] | undefined)?.length) {
    try {
      await admin.command({ createUser: user.username, pwd: user.password, roles });
      return 'created';
    } catch (err) {
      // Created in between (a concurrent deployment): fall through to the update.
      if (!(err instanceof MongoServerError && USER_EXISTS.has(Number(err.code)))) throw err;
    }
  }
  await admin.command({ updateUser: user.username, pwd: user.password, roles });
  return 'updated';
}
