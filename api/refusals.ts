import { KurirError } from '../common/errors.js';
import type { Refusal } from '../common/security/send-gate.js';

/** The answer to a refused send: the rule is named, except where naming it would help an abuser. */
export function refusalError(refusal: Refusal): KurirError {
  const retryAfterSeconds = 'retryAfterMs' in refusal ? Math.max(1, Math.ceil(refusal.retryAfterMs / 1000)) : undefined;
  switch (refusal.kind) {
    case 'number_type':
      return new KurirError('destination_not_allowed', 'Codes are sent to mobile numbers only (no fixed-line, premium-rate or shared-cost numbers).', { rule: refusal.rule });
    case 'geo':
      return new KurirError('destination_not_allowed', 'Codes cannot be sent to this destination.', { rule: refusal.rule });
    case 'quarantine':
      // Deliberately generic: telling a pumper which rule tripped helps them tune around it.
      return new KurirError('destination_not_allowed', 'Codes cannot be sent to this destination right now.', { rule: refusal.rule });
    case 'lockout':
      return new KurirError('destination_locked', 'Too many wrong codes for this destination; try again later.', { rule: refusal.rule, retryAfterSeconds });
    case 'budget':
      return new KurirError('budget_exhausted', 'The daily message budget for this channel is used up.', { rule: refusal.rule, retryAfterSeconds });
    case 'rate_limit':
      return new KurirError('rate_limited', `Too many codes requested (${refusal.rule}).`, { rule: refusal.rule, retryAfterSeconds });
  }
}
