import { ReplyError } from 'ioredis';
import { BackendUnavailableError, CredentialsRejectedError } from '../../../runtime/errors';

/**
 * Server error codes (first word of the reply) that mean "cannot serve right
 * now": 503. `OOM`: memory is full under `noeviction`; the refused command
 * (or a script's first write that needs memory) wrote nothing.
 */
const UNAVAILABLE_REPLIES = new Set(['LOADING', 'READONLY', 'MASTERDOWN', 'BUSY', 'TRYAGAIN', 'CLUSTERDOWN', 'NOREPLICAS', 'OOM']);

/** Replies that mean the server did not accept our credentials: nothing ran (rotation). */
const AUTH_REPLIES = new Set(['NOAUTH', 'WRONGPASS']);

/** Node/OpenSSL codes of a certificate that failed verification (chain, expiry, host name). */
const TLS_VERIFICATION_CODES = /^(ERR_TLS_CERT_ALTNAME_INVALID|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_[A-Z_]+|CERT_[A-Z_]+)$/;

/** The server's error code (first word of a `ReplyError`), or undefined when the server did not answer with an error. */
export function replyCode(err: unknown): string | undefined {
  return err instanceof ReplyError ? (err as Error).message.split(' ', 1)[0] : undefined;
}

/** NOAUTH / WRONGPASS: the server refused the credentials before anything ran. */
export function isAuthReply(err: unknown): boolean {
  return AUTH_REPLIES.has(replyCode(err) ?? '');
}

/**
 * The one place a Redis failure becomes the pipeline's error.
 *
 * While connecting (`during: 'connect'`, the PING of an idle connection
 * included): rejected credentials → `CredentialsRejectedError`; a
 * certificate that fails verification is a misconfiguration (or an
 * impostor), not an outage: a plain error, 500; anything else → 503.
 *
 * A command (`during: 'command'`): ioredis rejects with a `ReplyError` when
 * the server answered with an error, and with a plain Error when the
 * transport failed (connection closed, not writable, command timed out),
 * always a 503. NOAUTH / WRONGPASS → `CredentialsRejectedError` (the
 * pipeline re-reads the secret and retries on a fresh store); a reply
 * meaning "not now" (LOADING, READONLY, …) → 503; any other reply unchanged.
 */
export function toRedisCounterError(err: unknown, during: 'connect' | 'command', secretArn?: string): unknown {
  const code = replyCode(err);
  if (during === 'connect') {
    if (isAuthReply(err)) return new CredentialsRejectedError('Redis rejected the credentials', { cause: err, secretArn });
    const socketCode = String((err as { code?: unknown })?.code ?? '');
    if (TLS_VERIFICATION_CODES.test(socketCode)) return new Error(`TLS verification of the Redis endpoint failed (${socketCode})`, { cause: err });
    return new BackendUnavailableError('Redis is unreachable', { cause: err });
  }
  if (code === undefined) return new BackendUnavailableError('Redis is unavailable', { cause: err });
  if (AUTH_REPLIES.has(code)) return new CredentialsRejectedError(`Redis rejected the credentials (${code})`, { cause: err, secretArn });
  if (UNAVAILABLE_REPLIES.has(code)) return new BackendUnavailableError(`Redis cannot serve the request (${code})`, { cause: err });
  return err;
}
