import { PassThrough } from "node:stream";
import type { BsfgClient } from "@bsfg/client";
import type { FactMessage } from "@bsfg/proto";
import type { ZoneStore } from "@bsfg/storage";

/** What a fact's object_json says about the artifact it references. */
export interface ArtifactRef {
  readonly bucket: string;
  readonly key: string;
  readonly digest: string;
  readonly size: number;
  readonly mediaType: string;
  readonly fileName?: string;
}

/**
 * The artifact a fact references, if any. Ingest has validated the reference
 * (docs/protocol.md): a fact with envelope.object_media_type whose object has
 * bucket, key, digest, size and media_type.
 */
export function artifactRefOf(message: FactMessage): ArtifactRef | undefined {
  if (!message.envelope?.objectMediaType) return undefined;
  let object: unknown;
  try {
    object = JSON.parse(message.fact?.objectJson ?? "null");
  } catch {
    return undefined;
  }
  if (typeof object !== "object" || object === null) return undefined;
  const o = object as Record<string, unknown>;
  if (typeof o.bucket !== "string" || typeof o.key !== "string" || typeof o.digest !== "string" || typeof o.size !== "number") return undefined;
  return {
    bucket: o.bucket,
    key: o.key,
    digest: o.digest,
    size: o.size,
    mediaType: typeof o.media_type === "string" ? o.media_type : message.envelope.objectMediaType,
    ...(typeof o.file_name === "string" ? { fileName: o.file_name } : {}),
  };
}

/**
 * Makes sure the artifact is in this zone's bucket with the referenced digest:
 * "present" if it already was, "copied" after streaming it from the peer. The
 * local upload verifies digest and size before the object becomes visible, so
 * a fact is never appended ahead of a complete, verified artifact. Memory stays
 * bounded: the peer's stream is piped into the upload with backpressure.
 */
export async function ensureArtifact(store: ZoneStore, peer: Pick<BsfgClient, "fetchObject">, ref: ArtifactRef, signal: AbortSignal): Promise<"present" | "copied"> {
  const local = await store.statObject(ref.bucket, ref.key);
  // A different digest under the same key is refused by the upload below (conflicting_object).
  if (local && local.digest === ref.digest) return "present";
  const pipe = new PassThrough({ highWaterMark: 512 * 1024 });
  // A download that fails destroys the pipe with its error, maybe before the upload reads it:
  // the upload meets the error as it reads; an unheard 'error' event would crash the process.
  pipe.on("error", () => undefined);
  const abort = new AbortController();
  const stop = () => abort.abort(signal.reason);
  signal.addEventListener("abort", stop, { once: true });
  const upload = store.putObject({ bucket: ref.bucket, key: ref.key, mediaType: ref.mediaType, fileName: ref.fileName, expectedDigest: ref.digest, size: ref.size }, pipe);
  // An upload that fails early stops reading: stop the download too, or it waits for a drain forever.
  let uploadFailedFirst = false;
  upload.catch(() => {
    uploadFailedFirst = true;
    abort.abort(new Error("local upload failed"));
  });
  try {
    await peer.fetchObject(ref.bucket, ref.key, pipe, { signal: abort.signal });
    pipe.end();
  } catch (err) {
    // Read before destroying the pipe, which fails the upload too.
    const uploadWasFirst = uploadFailedFirst;
    pipe.destroy(err as Error);
    // The upload's own error says more (e.g. conflicting_object) when it failed first; when the
    // download failed first (the peer said not_found, the link broke), that is the cause.
    const uploaded = await upload.then(() => undefined, (uploadError: unknown) => uploadError);
    throw uploadWasFirst && uploaded !== undefined ? uploaded : err;
  } finally {
    signal.removeEventListener("abort", stop);
  }
  await upload;
  return "copied";
}
