import { KurirError } from '../common/errors.js';
import type { Refusal } from '../common/security/send-gate.js';

/** `Retry-After` in whole seconds, never 0 (a client told "retry in 0 s" retries at once). */
export function retryAfterSeconds(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}

/** The answer to a refused send: the rule is named, except where naming it would help an abuser. */
export function refusalError(refusal: Refusal): KurirError {
  const retryAfter = 'retryAfterMs' in refusal ? retryAfterSeconds(refusal.retryAfterMs) : undefined;
  switch (refusal.kind) {
    case 'number_type':
      return new KurirError('destination_not_allowed', 'Codes are sent to mobile numbers only (no fixed-line, premium-rate or shared-cost numbers).', { rule: refusal.rule });
    case 'geo':
      return new KurirError('destination_not_allowed', 'Codes cannot be sent to this destination.', { rule: refusal.rule });
    case 'quarantine':
      // Deliberately generic: telling a pumper which rule tripped helps them tune around it.
      return new KurirError('destination_not_allowed', 'Codes cannot be sent to this destination right now.', { rule: refusal.rule });
    case 'lockout':
      return new KurirError('destination_locked', 'Too many wrong codes for this destination; try again later.', { rule: refusal.rule, retryAfterSeconds: retryAfter });
    case 'budget':
      return new KurirError('budget_exhausted', 'The daily message budget for this channel is used up.', { rule: refusal.rule, retryAfterSeconds: retryAfter });
    case 'rate_limit':
      return new KurirError('rate_limited', `Too many codes requested (${refusal.rule}).`, { rule: refusal.rule, retryAfterSeconds: retryAfter });
    case 'idempotency_conflict':
      return new KurirError('idempotency_key_reused', 'This Idempotency-Key was used with a different request body.');
  }
}
