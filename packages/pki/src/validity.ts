const DAY_MS = 24 * 60 * 60 * 1000;

// Processes in other zones (or containers) may run a few minutes behind the machine that
// issued the certificate; a certificate that is "not yet valid" for them is a confusing
// failure, so new certificates start slightly in the past.
const CLOCK_SKEW_ALLOWANCE_MS = 5 * 60 * 1000;

export interface ValidityRequest {
  notBefore?: Date | undefined;
  notAfter?: Date | undefined;
  validDays?: number | undefined;
}

/**
 * The validity window of a new certificate. Explicit dates win (tests issue expired or
 * not-yet-valid certificates on purpose); a missing end is `validDays` after the start,
 * a missing start is "now" unless that would fall after an explicit end.
 */
export function validityWindow(req: ValidityRequest, defaultDays: number, now: Date = new Date()): { notBefore: Date; notAfter: Date } {
  const days = req.validDays ?? defaultDays;
  if (!Number.isFinite(days) || days <= 0) throw new RangeError(`validDays must be a positive number, got ${days}`);
  const span = days * DAY_MS;
  const notBefore =
    req.notBefore ??
    (req.notAfter ? new Date(Math.min(now.getTime() - CLOCK_SKEW_ALLOWANCE_MS, req.notAfter.getTime() - span)) : new Date(now.getTime() - CLOCK_SKEW_ALLOWANCE_MS));
  const notAfter = req.notAfter ?? new Date((req.notBefore ? notBefore.getTime() : now.getTime()) + span);
  if (Number.isNaN(notBefore.getTime()) || Number.isNaN(notAfter.getTime())) throw new RangeError("Invalid validity date");
  if (notAfter.getTime() <= notBefore.getTime()) {
    throw new RangeError(`notAfter (${notAfter.toISOString()}) must be after notBefore (${notBefore.toISOString()})`);
  }
  return { notBefore, notAfter };
}

export function daysBetween(from: Date, to: Date): number {
  return (to.getTime() - from.getTime()) / DAY_MS;
}
