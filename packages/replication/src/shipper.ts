import { Code } from "@connectrpc/connect";
import { Reason, rejection } from "@bsfg/proto";
import { factSubject, MAX_FACTS_PER_SHIPMENT, readLinkPosition, shipPage, type LinkPosition, type ShippedFact, type Substrate } from "@bsfg/storage";
import type { AdmittedFact } from "./admission.js";

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
  /** Facts at or below the link's position: already here from an earlier attempt. */
  readonly alreadyHere: number;
}

/**
 * The link's local write: facts as the peer stored them, appended with the link's
 * position in one fenced atomic batch (see docs/replication.md, "Log shipping").
 * Positions are read from the log when first needed and after any outcome that
 * is not known (a timeout: the batch may or may not have committed).
 */
export interface Shipper {
  ship(category: string, facts: readonly AdmittedFact[], pageLastOffset: number, traceContext?: (index: number) => Readonly<Record<string, string>> | undefined): Promise<Shipment>;
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
    async ship(category, facts, pageLastOffset, traceContext) {
      if (!categories.has(category)) {
        throw rejection(Code.FailedPrecondition, Reason.UnknownStream, `peer ${options.peer} relays stream "${category}", which this zone does not have (storage.streams): add it, or change the peer's consumer`, { stream: category });
      }
      let position = await positionOf(category);
      const fresh: { fact: AdmittedFact; index: number }[] = [];
      facts.forEach((fact, index) => {
        if (Number(fact.stored.offset) > position.peerOffset) fresh.push({ fact, index });
      });
      if (fresh.length === 0 && pageLastOffset <= position.peerOffset) return { shipped: 0, alreadyHere: facts.length };
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
      return { shipped: fresh.length, alreadyHere: facts.length - fresh.length };
    },
    forget() {
      positions.clear();
    },
  };
}
