import { Code } from "@connectrpc/connect";
import { Reason, reasonOf, rejection } from "@bsfg/proto";
import { factSubject, MAX_FACTS_PER_SHIPMENT, park, readLinkPosition, shipPage, type LinkPosition, type ShippedFact, type Substrate } from "@bsfg/storage";
import type { AdmittedFact, RefusedFact } from "./admission.js";

/** Where a relayed fact came from, stored with it: "<peer zone>/<peer stream>/<peer offset>". */
export const ORIGIN_HEADER = "Bsfg-Origin";

export interface ShipperOptions {
  /** This zone's stream categories: a relayed fact keeps its category, which must exist here. */
  readonly categories: readonly string[];
  readonly link: string;
  readonly peer: string;
}

export interface Shipment {
  /** Facts appended here. */
  readonly shipped: number;
  /** Facts at or below the link's position: already here (or set aside) from an earlier attempt. */
  readonly alreadyHere: number;
  /** Refused facts parked in the quarantine now (not those parked by an earlier attempt). */
  readonly setAside: readonly RefusedFact[];
}

/**
 * The link's local write: facts as the peer stored them, appended with the link's
 * position in one fenced atomic batch (see docs/replication.md, "Log shipping").
 * Positions are read from the log when first needed and after any outcome that
 * is not known (a timeout: the batch may or may not have committed).
 */
export interface Shipper {
  /**
   * Parks the refused facts in the quarantine, then appends the admitted ones with the
   * link's new position: a refused fact is set aside before the position passes it.
   */
  ship(category: string, facts: readonly AdmittedFact[], refused: readonly RefusedFact[], pageLastOffset: number, traceContext?: (index: number) => Readonly<Record<string, string>> | undefined): Promise<Shipment>;
  /** Forgets the positions read: after the lease changed hands they must be read again. */
  forget(): void;
}

export function shipper(substrate: Substrate, options: ShipperOptions): Shipper {
  const positions = new Map<string, LinkPosition>();
  const categories = new Set(options.categories);

  async function positionOf(category: string): Promise<LinkPosition> {
    let position = positions.get(category);
    if (!position) {
      position = await readLinkPosition(substrate, category, options.link);
      positions.set(category, position);
    }
    return position;
  }

  return {
    async ship(category, facts, refused, pageLastOffset, traceContext) {
      if (!categories.has(category)) {
        throw rejection(Code.FailedPrecondition, Reason.UnknownStream, `peer ${options.peer} relays stream "${category}", which this zone does not have (storage.streams): add it, or change the peer's consumer`, { stream: category });
      }
      let position = await positionOf(category);
      const fresh: { fact: AdmittedFact; index: number }[] = [];
      facts.forEach((fact, index) => {
        if (Number(fact.stored.offset) > position.peerOffset) fresh.push({ fact, index });
      });
      const setAside: RefusedFact[] = [];
      for (const fact of refused) {
        if (Number(fact.stored.offset) <= position.peerOffset) continue;
        const { already } = await park(substrate, {
          link: options.link, peer: options.peer, stream: category, peerOffset: Number(fact.stored.offset), messageId: fact.messageId,
          reason: reasonOf(fact.error) ?? "unknown", detail: fact.error.rawMessage, peerStoredAtMs: Number(fact.stored.storedAtUnixMs),
          servedDigest: Buffer.from(fact.stored.messageSha256).toString("hex"),
        }, fact.stored.message);
        if (!already) setAside.push(fact);
      }
      const passed = refused.length - setAside.length;
      if (fresh.length === 0 && pageLastOffset <= position.peerOffset) return { shipped: 0, alreadyHere: facts.length + passed, setAside };
      for (let start = 0; start < Math.max(fresh.length, 1); start += MAX_FACTS_PER_SHIPMENT) {
        const chunk = fresh.slice(start, start + MAX_FACTS_PER_SHIPMENT);
        const last = start + MAX_FACTS_PER_SHIPMENT >= fresh.length;
        const peerOffset = last ? Math.max(pageLastOffset, position.peerOffset) : Number(chunk.at(-1)!.fact.stored.offset);
        const shipped: ShippedFact[] = chunk.map(({ fact, index }) => ({
          subject: factSubject(category, fact.kind),
          // The bytes as the peer stored them (admission checked them against their digest).
          data: fact.stored.message,
          headers: { [ORIGIN_HEADER]: `${options.peer}/${category}/${fact.stored.offset}`, ...(traceContext?.(index) ?? {}) },
        }));
        try {
          position = await shipPage(substrate, { category, link: options.link, peer: options.peer, peerStream: category, peerOffset, fence: position.fence, facts: shipped });
          positions.set(category, position);
        } catch (err) {
          positions.delete(category);
          throw err;
        }
      }
      return { shipped: fresh.length, alreadyHere: facts.length - fresh.length + passed, setAside };
    },
    forget() {
      positions.clear();
    },
  };
}
