import type { Locale } from '../domain/channel.js';

/**
 * The OTP texts, one entry per locale. Sentences are functions of typed values rather than
 * strings with `{placeholders}`, so a brand that happens to contain `{code}` is just text and
 * the compiler checks every locale supplies every sentence.
 *
 * Writing rules, kept across locales:
 * - SMS: the code comes first, so it shows in the notification preview and OS autofill finds it
 *   without reading further; then expiry; then the do-not-share warning (the line that defeats
 *   "read me the code you just got" social engineering).
 * - Brand is never inflected: Portuguese avoids "da/do <brand>" (gender unknown), Indonesian
 *   and Hindi place it where no case marker touches it.
 * - Digits are Western Arabic in every locale: autofill, and users, copy them as typed.
 * - Email keeps full orthography; SMS may be folded to GSM-7 later (see sms-encoding.ts).
 */

/** Values a sentence may use; `minutes` is already the localized phrase ("5 minutes"). */
export interface MessageValues {
  brand: string;
  code: string;
  minutes: string;
}

/** Forms keyed by CLDR plural category; `other` is required because every locale has it. */
export type PluralForms = Partial<Record<Intl.LDMLPluralRule, (n: number) => string>> & {
  other: (n: number) => string;
};

/** Every sentence Kurir sends, for one locale. */
export interface LocaleMessages {
  /** "<n> minute(s)" in the locale's plural forms. */
  minutes: PluralForms;
  sms: (v: MessageValues) => string;
  emailSubject: (v: MessageValues) => string;
  /** Line shown just above the big code. */
  emailIntro: (v: MessageValues) => string;
  emailExpiry: (v: MessageValues) => string;
  doNotShare: string;
  ignoreIfNotRequested: string;
}

export const CATALOG: Readonly<Record<Locale, LocaleMessages>> = {
  en: {
    minutes: { one: (n) => `${n} minute`, other: (n) => `${n} minutes` },
    sms: (v) => `${v.code} is your ${v.brand} verification code. It expires in ${v.minutes}. Do not share this code with anyone.`,
    emailSubject: (v) => `${v.code} is your ${v.brand} verification code`,
    emailIntro: (v) => `Your ${v.brand} verification code is:`,
    emailExpiry: (v) => `This code expires in ${v.minutes}.`,
    doNotShare: 'Do not share this code with anyone.',
    ignoreIfNotRequested: 'If you did not request this code, you can ignore this email.',
  },
  id: {
    // Indonesian has no grammatical plural: "1 menit", "5 menit". CLDR gives only `other`.
    minutes: { other: (n) => `${n} menit` },
    sms: (v) => `${v.code} adalah kode verifikasi ${v.brand} Anda. Berlaku selama ${v.minutes}. Jangan berikan kode ini kepada siapa pun.`,
    emailSubject: (v) => `${v.code} adalah kode verifikasi ${v.brand} Anda`,
    emailIntro: (v) => `Kode verifikasi ${v.brand} Anda adalah:`,
    emailExpiry: (v) => `Kode ini berlaku selama ${v.minutes}.`,
    doNotShare: 'Jangan berikan kode ini kepada siapa pun.',
    ignoreIfNotRequested: 'Jika Anda tidak meminta kode ini, Anda dapat mengabaikan email ini.',
  },
  'pt-BR': {
    minutes: { one: (n) => `${n} minuto`, other: (n) => `${n} minutos` },
    sms: (v) => `${v.code} é o seu código de verificação ${v.brand}. Expira em ${v.minutes}. Não compartilhe este código com ninguém.`,
    emailSubject: (v) => `${v.code} é o seu código de verificação ${v.brand}`,
    emailIntro: (v) => `Seu código de verificação ${v.brand} é:`,
    emailExpiry: (v) => `Este código expira em ${v.minutes}.`,
    doNotShare: 'Não compartilhe este código com ninguém.',
    ignoreIfNotRequested: 'Se você não solicitou este código, pode ignorar este e-mail.',
  },
  es: {
    // Informal "tú", as Google, WhatsApp and most apps use across Spain and Latin America;
    // "expira" rather than Spain's "caduca" or the Latin American "vence" reads as neutral.
    minutes: { one: (n) => `${n} minuto`, other: (n) => `${n} minutos` },
    sms: (v) => `${v.code} es tu código de verificación de ${v.brand}. Expira en ${v.minutes}. No compartas este código con nadie.`,
    emailSubject: (v) => `${v.code} es tu código de verificación de ${v.brand}`,
    emailIntro: (v) => `Tu código de verificación de ${v.brand} es:`,
    emailExpiry: (v) => `Este código expira en ${v.minutes}.`,
    doNotShare: 'No compartas este código con nadie.',
    ignoreIfNotRequested: 'Si no solicitaste este código, puedes ignorar este correo.',
  },
  hi: {
    // "मिनट" does not change with number in the direct case ("1 मिनट", "5 मिनट").
    minutes: { other: (n) => `${n} मिनट` },
    // SMS says "OTP", the word Indian banks and apps use in Hindi texts, and keeps the middle
    // sentence telegraphic: Devanagari forces UCS-2 (70 per segment), and this wording fits one
    // segment for brands up to 8 characters and two for any brand the policy allows (≤ 40).
    sms: (v) => `${v.code} आपका ${v.brand} OTP है। ${v.minutes} तक मान्य। किसी के साथ साझा न करें।`,
    emailSubject: (v) => `${v.code} आपका ${v.brand} सत्यापन कोड है`,
    emailIntro: (v) => `आपका ${v.brand} सत्यापन कोड है:`,
    emailExpiry: (v) => `यह कोड ${v.minutes} तक मान्य है।`,
    doNotShare: 'इसे किसी के साथ साझा न करें।',
    ignoreIfNotRequested: 'यदि आपने इस कोड का अनुरोध नहीं किया है, तो आप इस ईमेल को अनदेखा कर सकते हैं।',
  },
};
