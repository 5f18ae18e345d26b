import { tenantPolicy, type Policy } from '../common/config/policy.js';
import { minutesUntil, renderEmail, renderSms } from '../common/messages/messages.js';
import type { OutboundMessage } from '../common/providers/provider.js';
import type { SendContext } from '../common/store/verification.store.js';

/**
 * Renders the message for one delivery. WhatsApp uses the approved authentication template of
 * the locale (Meta fixes its wording; we only fill in the code); SMS and email use our texts,
 * with the brand of the tenant and the minutes left on the code *now*, so a fallback sent two
 * minutes later states the truth.
 */
export function composeMessage(
  context: SendContext,
  code: string,
  options: { policy: Policy; externalId: string; now: number },
): OutboundMessage {
  const base = { to: context.to, externalId: options.externalId };
  const input = {
    locale: context.locale,
    brand: tenantPolicy(options.policy, context.tenant).brand,
    code,
    expiresInMinutes: minutesUntil(context.expiresAt, options.now),
  };
  switch (context.channel) {
    case 'whatsapp': {
      const template = options.policy.templates.whatsapp[context.locale] ?? options.policy.templates.whatsapp.en;
      if (template === undefined) throw new Error(`no WhatsApp template for locale ${context.locale}`);
      return { ...base, channel: 'whatsapp', templateName: template.name, templateLanguage: template.language, code };
    }
    case 'sms':
      return { ...base, channel: 'sms', text: renderSms(input) };
    case 'email':
      return { ...base, channel: 'email', ...renderEmail(input) };
  }
}
