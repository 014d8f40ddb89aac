import { createHash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { AckPolicy, DeliverPolicy } from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/nats-core";
import type { ObjectInfo, ObjectStore } from "@nats-io/obj";
import { Code, ObjectRefSchema, Reason, rejection, type ConnectError, type ObjectRef } from "@bsfg/proto";
import { pullFromNewConsumer, pullOnce } from "./pull.js";
import { isWrongLastSequence, substrateRejection } from "./substrate-errors.js";
import { addReadConsumer } from "./read-consumer.js";
import type { Substrate } from "./substrate.js";
import { nanos } from "./units.js";

export interface ObjectHeaderInput {
  readonly bucket: string;
  readonly key: string;
  readonly mediaType: string;
  readonly fileName?: string | undefined;
  /** "sha256:<hex>"; the upload is rejected unless its content matches. */
  readonly expectedDigest?: string | undefined;
  /** The upload is rejected unless it has exactly this many bytes. */
  readonly size?: number | undefined;
}

export interface ObjectReader {
  readonly object: ObjectRef;
  /** The bytes from the requested offset; throws data_loss if the stored object does not match its digest. */
  readonly chunks: AsyncIterable<Uint8Array>;
}

/**
 * Artifacts in JetStream Object Store buckets, with our own SHA-256 on the way
 * in and on every read: the digest in an ObjectRef is something this gateway
 * computed and checked, not something it was told.
 */
export interface Artifacts {
  put(header: ObjectHeaderInput, content: AsyncIterable<Uint8Array>): Promise<ObjectRef>;
  stat(bucket: string, key: string): Promise<ObjectRef | undefined>;
  get(bucket: string, key: string, offset?: number): Promise<ObjectReader>;
}

const Meta = { MediaType: "Bsfg-Media-Type", FileName: "Bsfg-File-Name" } as const;
const digestPattern = /^sha256:[0-9a-f]{64}$/;
const keyPattern = /^[^\x00-\x1f\x7f]{1,1024}$/;
const noControlCharacters = /^[^\x00-\x1f\x7f]*$/;
const MAX_MEDIA_TYPE = 256;
const MAX_FILE_NAME = 1024;
const CHUNKS_PER_PULL = 8;

export function artifacts(substrate: Substrate, buckets: ReadonlyMap<string, ObjectStore>, chunkBytes: number, maxObjectBytes = Number.MAX_SAFE_INTEGER): Artifacts {
  function bucketStore(bucket: string): ObjectStore {
    const store = buckets.get(bucket);
    if (!store) {
      throw rejection(Code.NotFound, Reason.UnknownBucket, `bucket "${bucket}" is not configured in this zone (buckets: ${[...buckets.keys()].join(", ")})`, { bucket });
    }
    return store;
  }

  async function anyInfo(store: ObjectStore, key: string): Promise<ObjectInfo | null> {
    return store.info(key).catch((err) => { throw substrateRejection(err, "reading object metadata"); });
  }

  async function currentInfo(store: ObjectStore, key: string): Promise<ObjectInfo | undefined> {
    // No object is stored under a key PutObject refuses, and asking JetStream about a huge one
    // fails as "did not answer" (max_payload): that would be a retry-safe unavailable for ever.
    if (!keyPattern.test(key)) return undefined;
    const info = await anyInfo(store, key);
    return info && !info.deleted ? info : undefined;
  }

  /**
   * Whether every chunk the metadata names is stored. It is not when an
   * upload's final acknowledgement was lost: the client library then purges the
   * chunks although the metadata record was written.
   */
  async function chunksIntact(info: ObjectInfo): Promise<boolean> {
    if (info.size === 0) return true;
    const subject = `$O.${info.bucket}.C.${info.nuid}`;
    const stream = await substrate.jsm.streams.info(`OBJ_${info.bucket}`, { subjects_filter: subject })
      .catch((err) => { throw substrateRejection(err, "reading object chunks"); });
    return (stream.state.subjects?.[subject] ?? 0) === info.chunks;
  }

  async function sameOrConflict(existing: ObjectInfo, digest: string, size: number): Promise<ObjectRef> {
    const ref = refOf(existing);
    if (ref.digest === digest && Number(ref.size) === size) return ref;
    throw rejection(Code.AlreadyExists, Reason.ConflictingObject, `object ${existing.bucket}/${existing.name} exists with digest ${ref.digest}; objects are immutable`, {
      bucket: existing.bucket, key: existing.name, digest: ref.digest,
    });
  }

  return {
    async put(header, content) {
      const store = bucketStore(header.bucket);
      checkHeader(header);
      const tooLarge = (bytes: number, how: string) => rejection(Code.InvalidArgument, Reason.ObjectTooLarge, `object ${header.bucket}/${header.key}: ${how} ${bytes} bytes, more than this zone takes (storage.limits.maxObjectBytes: ${maxObjectBytes})`, {
        bucket: header.bucket, key: header.key, max_bytes: String(maxObjectBytes),
      });
      if (header.size !== undefined && header.size > maxObjectBytes) throw tooLarge(header.size, "declared");
      const hash = createHash("sha256");
      let size = 0;
      const verify = () => {
        const digest = `sha256:${hash.copy().digest("hex")}`;
        if (header.size !== undefined && header.size !== size) {
          throw rejection(Code.InvalidArgument, Reason.SizeMismatch, `object ${header.bucket}/${header.key}: received ${size} bytes, the header said ${header.size}`, { bucket: header.bucket, key: header.key });
        }
        if (header.expectedDigest !== undefined && header.expectedDigest !== digest) {
          throw rejection(Code.InvalidArgument, Reason.DigestMismatch, `object ${header.bucket}/${header.key}: received content has digest ${digest}, the header said ${header.expectedDigest}`, { bucket: header.bucket, key: header.key });
        }
        return digest;
      };
      /** Our own refusal raised while the bytes stream in (the client library wraps it). */
      let refused: ConnectError | undefined;
      const count = (chunk: Uint8Array) => {
        hash.update(chunk);
        size += chunk.byteLength;
        // Counted as the bytes stream in: an object without a declared size stops at the limit.
        if (size > maxObjectBytes) throw (refused = tooLarge(size, "received at least"));
      };

      const existing = await anyInfo(store, header.key);
      if (existing && !existing.deleted && await chunksIntact(existing)) {
        for await (const chunk of content) count(chunk);
        return sameOrConflict(existing, verify(), size);
      }
      // Absent, deleted by an operator, or broken by a lost acknowledgement (never
      // acknowledged to anyone): write it, on condition that nothing changed meanwhile.
      const previousRevision = existing?.revision ?? 0;

      const meta = natsHeaders();
      meta.set(Meta.MediaType, header.mediaType);
      if (header.fileName) meta.set(Meta.FileName, header.fileName);
      let digest = "";
      const source = pullStream(content, count, () => {
        digest = verify();
      });
      try {
        // The metadata record is written last, with "expected last subject
        // sequence = 0": the object becomes visible only after every chunk is
        // stored and verified, and never replaces an existing object.
        const info = await store.put({ name: header.key, headers: meta, options: { max_chunk_size: chunkBytes } }, source, { previousRevision });
        const ref = refOf(info);
        if (ref.digest !== digest) throw rejection(Code.DataLoss, Reason.ObjectCorrupted, `object ${header.bucket}/${header.key}: stored digest ${ref.digest} differs from ours ${digest}`);
        return ref;
      } catch (err) {
        // The chunks stored so far were purged by the client library.
        if (refused) throw refused;
        if (isWrongLastSequence(err)) {
          // Someone stored the same key while we were uploading.
          const winner = await currentInfo(store, header.key);
          if (winner && await chunksIntact(winner)) return sameOrConflict(winner, digest, size);
        }
        throw substrateRejection(err, `storing object ${header.bucket}/${header.key}`);
      }
    },

    async stat(bucket, key) {
      const info = await currentInfo(bucketStore(bucket), key);
      return info ? refOf(info) : undefined;
    },

    async get(bucket, key, offset = 0) {
      const info = await currentInfo(bucketStore(bucket), key);
      if (!info) throw rejection(Code.NotFound, Reason.ObjectNotFound, `object ${bucket}/${key} does not exist`, { bucket, key });
      const object = refOf(info);
      if (offset < 0 || offset > info.size) {
        throw rejection(Code.InvalidArgument, Reason.InvalidField, `offset ${offset} is outside object ${bucket}/${key} of ${info.size} bytes`, { bucket, key });
      }
      return { object, chunks: asRejections(verifiedChunks(substrate, info, object.digest, offset), `reading object ${bucket}/${key}`) };
    },
  };
}

function checkHeader(header: ObjectHeaderInput): void {
  const at = { bucket: header.bucket, key: header.key };
  if (!keyPattern.test(header.key)) throw rejection(Code.InvalidArgument, Reason.InvalidField, "object key must be 1–1024 characters without control characters", at);
  if (header.mediaType === "") throw rejection(Code.InvalidArgument, Reason.MissingField, "object media_type is required", at);
  // Both travel as NATS headers of the object's metadata record: a line break there threw
  // inside the client library (an internal error), and a record beyond JetStream's
  // max_payload was refused as "did not answer" (a retry-safe unavailable, retried for ever).
  // A fact's envelope takes at most 256 characters of object_media_type anyway.
  if (header.mediaType.length > MAX_MEDIA_TYPE || !noControlCharacters.test(header.mediaType)) {
    throw rejection(Code.InvalidArgument, Reason.InvalidField, `object media_type must be at most ${MAX_MEDIA_TYPE} characters without control characters`, at);
  }
  if ((header.fileName ?? "").length > MAX_FILE_NAME || !noControlCharacters.test(header.fileName ?? "")) {
    throw rejection(Code.InvalidArgument, Reason.InvalidField, `object file_name must be at most ${MAX_FILE_NAME} characters without control characters`, at);
  }
  if (header.expectedDigest !== undefined && !digestPattern.test(header.expectedDigest)) {
    throw rejection(Code.InvalidArgument, Reason.InvalidField, 'expected_digest must be "sha256:<64 lowercase hex>"', at);
  }
}

function refOf(info: ObjectInfo): ObjectRef {
  // Object Store records "SHA-256=<base64url>"; the contract speaks "sha256:<hex>".
  const digest = `sha256:${Buffer.from(info.digest.replace(/^SHA-256=/, ""), "base64url").toString("hex")}`;
  return create(ObjectRefSchema, {
    bucket: info.bucket,
    key: info.name,
    digest,
    size: BigInt(info.size),
    mediaType: info.headers?.get(Meta.MediaType) ?? "",
    fileName: info.headers?.get(Meta.FileName) ?? "",
  });
}

/** Errors from the substrate while streaming surface as rejections too. */
async function* asRejections(chunks: AsyncGenerator<Uint8Array>, what: string): AsyncGenerator<Uint8Array> {
  try {
    yield* chunks;
  } catch (err) {
    throw substrateRejection(err, what);
  }
}

/** A pull-driven ReadableStream: it asks the source for a chunk only when the writer wants one. */
function pullStream(source: AsyncIterable<Uint8Array>, onChunk: (chunk: Uint8Array) => void, onEnd: () => void): ReadableStream<Uint8Array> {
  const it = source[Symbol.asyncIterator]();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await it.next();
        if (done) {
          onEnd();
          controller.close();
          return;
        }
        if (value.byteLength === 0) return;
        onChunk(value);
        controller.enqueue(value);
      } catch (err) {
        controller.error(err);
      }
    },
    async cancel(reason) {
      await it.return?.(reason);
    },
  }, { highWaterMark: 0 });
}

/**
 * Streams an object's chunks with one pull consumer, a few chunks per pull, so
 * memory stays bounded whatever the object's size. The whole object is always
 * hashed (a resumed read skips bytes, not verification).
 */
async function* verifiedChunks(substrate: Substrate, info: ObjectInfo, digest: string, offset: number): AsyncGenerator<Uint8Array> {
  const corrupted = (why: string) => rejection(Code.DataLoss, Reason.ObjectCorrupted, `object ${info.bucket}/${info.name} is corrupted: ${why}`, { bucket: info.bucket, key: info.name });
  const hash = createHash("sha256");
  let position = 0;
  let chunks = 0;
  if (info.size > 0) {
    const stream = `OBJ_${info.bucket}`;
    const consumer = await addReadConsumer(substrate, stream, "bsfg_object_", {
      ack_policy: AckPolicy.None,
      deliver_policy: DeliverPolicy.All,
      filter_subject: `$O.${info.bucket}.C.${info.nuid}`,
      mem_storage: true,
      num_replicas: 1,
      // A reader may pause (a slow peer); keep the consumer while it does.
      inactive_threshold: nanos(5 * 60_000),
    });
    try {
      let remaining = consumer.num_pending;
      for (let pull = pullFromNewConsumer; remaining > 0; pull = pullOnce) {
        // Pull the next few chunks only when the reader asked for more: bounded memory.
        const { messages: batch } = await pull(substrate, stream, consumer.name, { batch: Math.min(CHUNKS_PER_PULL, remaining) });
        if (batch.length === 0) throw corrupted("chunks stopped arriving");
        for (const m of batch) {
          remaining = m.pending;
          chunks++;
          hash.update(m.data);
          const end = position + m.data.byteLength;
          if (end > offset) yield m.data.subarray(Math.max(0, offset - position));
          position = end;
        }
      }
    } finally {
      substrate.jsm.consumers.delete(stream, consumer.name).catch(() => undefined);
    }
  }
  if (chunks !== info.chunks) throw corrupted(`${chunks} chunks stored, ${info.chunks} expected`);
  if (position !== info.size) throw corrupted(`${position} bytes stored, ${info.size} expected`);
  const actual = `sha256:${hash.digest("hex")}`;
  if (actual !== digest) throw corrupted(`content digest ${actual}, recorded ${digest}`);
}
