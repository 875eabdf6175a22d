/* eslint-disable no-bitwise -- the wire protocol's flag words are bit operations */
/**
 * MongoDB wire-protocol framing for the in-process server
 * (mongo-wire-server.ts): splitting a byte stream into messages, decoding
 * OP_MSG (body and document sequences) and the legacy OP_QUERY handshake,
 * and encoding replies. No command semantics here.
 */
import { Document, deserialize, serialize } from 'bson';

export const OP_REPLY = 1;
export const OP_QUERY = 2004;
export const OP_MSG = 2013;
const FLAG_CHECKSUM = 1 << 0;
const FLAG_MORE_TO_COME = 1 << 1; // client expects no reply (w:0 writes)
export const MAX_MESSAGE = 48_000_000;
export const MAX_WIRE_VERSION = 17; // MongoDB 6.0

/** One decoded request: an OP_MSG command, or a legacy OP_QUERY command on `db`. */
export type WireRequest =
  | { readonly kind: 'msg'; readonly requestId: number; readonly body: Document; readonly expectsReply: boolean }
  | { readonly kind: 'query'; readonly requestId: number; readonly db: string; readonly query: Document };

/**
 * Takes every complete message off the front of `buffer`: returns them and
 * the rest. A length outside the protocol's bounds is an error (a real
 * server drops the connection).
 */
export function takeMessages(buffer: Buffer): { messages: Buffer[]; rest: Buffer } {
  const messages: Buffer[] = [];
  let rest = buffer;
  while (rest.length >= 4) {
    const length = rest.readInt32LE(0);
    if (length < 16 || length > MAX_MESSAGE) throw new Error(`message length ${length} out of bounds`);
    if (rest.length < length) break;
    messages.push(rest.subarray(0, length));
    rest = rest.subarray(length);
  }
  return { messages, rest };
}

const isPlainObject = (v: unknown): v is Document =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !(v as any)._bsontype;

/** Decodes one message; throws on anything this server does not speak. */
export function decodeMessage(msg: Buffer): WireRequest {
  const requestId = msg.readInt32LE(4);
  const opCode = msg.readInt32LE(12);
  if (opCode === OP_MSG) {
    const flags = msg.readUInt32LE(16);
    const end = msg.length - (flags & FLAG_CHECKSUM ? 4 : 0);
    let body: Document | undefined;
    const sequences: Document = {};
    for (let off = 20; off < end;) {
      const kind = msg[off++];
      const size = msg.readInt32LE(off);
      if (kind === 0) {
        body = deserialize(msg.subarray(off, off + size));
      } else if (kind === 1) {
        // Document sequence: int32 size, cstring identifier, then BSON documents.
        // The driver sends insert `documents`, update `updates`, delete `deletes` this way.
        const nul = msg.indexOf(0, off + 4);
        const docs: Document[] = [];
        for (let p = nul + 1; p < off + size; p += msg.readInt32LE(p)) docs.push(deserialize(msg.subarray(p, p + msg.readInt32LE(p))));
        sequences[msg.toString('utf8', off + 4, nul)] = docs;
      } else {
        throw new Error(`unknown OP_MSG section kind ${kind}`);
      }
      off += size;
    }
    if (!body) throw new Error('OP_MSG without body');
    return { kind: 'msg', requestId, body: { ...body, ...sequences }, expectsReply: !(flags & FLAG_MORE_TO_COME) };
  }
  if (opCode === OP_QUERY) {
    // Legacy OP_QUERY: only the first handshake (`isMaster`/`hello` on admin.$cmd) uses it.
    const nul = msg.indexOf(0, 20);
    const db = msg.toString('utf8', 20, nul).split('.')[0];
    const docStart = nul + 1 + 8; // skip numberToSkip, numberToReturn
    let query = deserialize(msg.subarray(docStart, docStart + msg.readInt32LE(docStart)));
    if (isPlainObject(query.$query)) query = query.$query;
    return { kind: 'query', requestId, db, query };
  }
  throw new Error(`unsupported opcode ${opCode}`); // e.g. OP_COMPRESSED: we never offer compression
}

/** A whole reply message: header, then the OP_MSG section or the OP_REPLY fields, then the document. */
export function encodeReply(request: WireRequest, ownRequestId: number, reply: Document): Buffer {
  let opCode: number;
  let payload: Buffer;
  if (request.kind === 'msg') {
    opCode = OP_MSG;
    payload = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), serialize(reply)]); // flagBits, section kind 0
  } else {
    opCode = OP_REPLY;
    const head = Buffer.alloc(20); // responseFlags, cursorID (int64), startingFrom, numberReturned
    head.writeInt32LE(1, 16);
    payload = Buffer.concat([head, serialize(reply)]);
  }
  const header = Buffer.alloc(16);
  header.writeInt32LE(16 + payload.length, 0);
  header.writeInt32LE(ownRequestId, 4);
  header.writeInt32LE(request.requestId, 8);
  header.writeInt32LE(opCode, 12);
  return Buffer.concat([header, payload]);
}
