import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LOCALES, type Locale } from '../../common/domain/channel.js';
import { DEFAULT_POLICY } from '../../common/config/policy.js';
import {
  isSupportedLocaleTag,
  minutesUntil,
  renderEmail,
  renderSms,
  resolveLocale,
} from '../../common/messages/messages.js';
import { foldToGsm7, measureSms } from '../../common/messages/sms-encoding.js';

// An independent segment counter, deliberately simpler than the module's (no split-avoidance),
// so the length assertions do not just repeat the implementation's arithmetic.
const GSM_BASIC =
  '@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !"#¤%&\'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà';
const GSM_EXTENDED = '\f^{}\\[~]|€';

function smsSize(text: string): { encoding: 'GSM-7' | 'UCS-2'; units: number; segments: number } {
  const chars = [...text];
  if (chars.every((c) => GSM_BASIC.includes(c) || GSM_EXTENDED.includes(c))) {
    const units = chars.reduce((n, c) => n + (GSM_EXTENDED.includes(c) ? 2 : 1), 0);
    return { encoding: 'GSM-7', units, segments: units <= 160 ? 1 : Math.ceil(units / 153) };
  }
  const units = text.length; // UTF-16 code units
  return { encoding: 'UCS-2', units, segments: units <= 70 ? 1 : Math.ceil(units / 67) };
}

const BASE = { brand: 'Acme', code: '123456', expiresInMinutes: 5 } as const;

const EXPECTED_SMS: Record<Locale, string> = {
  en: '123456 is your Acme verification code. It expires in 5 minutes. Do not share this code with anyone.',
  id: '123456 adalah kode verifikasi Acme Anda. Berlaku selama 5 menit. Jangan berikan kode ini kepada siapa pun.',
  // Folded to GSM-7 on purpose: accents outside the alphabet dropped, é kept.
  'pt-BR': '123456 é o seu codigo de verificacao Acme. Expira em 5 minutos. Nao compartilhe este codigo com ninguém.',
  es: '123456 es tu codigo de verificacion de Acme. Expira en 5 minutos. No compartas este codigo con nadie.',
  hi: '123456 आपका Acme OTP है। 5 मिनट तक मान्य। किसी के साथ साझा न करें।',
};

// Measured lengths for brand "Acme", 6 digits, 5 minutes; the doc comment of renderSms quotes them.
const MEASURED: Record<Locale, { encoding: 'GSM-7' | 'UCS-2'; units: number; segments: number }> = {
  en: { encoding: 'GSM-7', units: 99, segments: 1 },
  id: { encoding: 'GSM-7', units: 106, segments: 1 },
  'pt-BR': { encoding: 'GSM-7', units: 104, segments: 1 },
  es: { encoding: 'GSM-7', units: 101, segments: 1 },
  hi: { encoding: 'UCS-2', units: 66, segments: 1 },
};

const DO_NOT_SHARE: Record<Locale, RegExp> = {
  en: /Do not share this code with anyone\./,
  id: /Jangan berikan kode ini kepada siapa pun\./,
  'pt-BR': /N[aã]o compartilhe este c[oó]digo com ningu[eé]m\./,
  es: /No compartas este c[oó]digo con nadie\./,
  hi: /किसी के साथ साझा न करें।/,
};

const MINUTES_PHRASE: Record<Locale, { one: string; five: string }> = {
  en: { one: '1 minute', five: '5 minutes' },
  id: { one: '1 menit', five: '5 menit' },
  'pt-BR': { one: '1 minuto', five: '5 minutos' },
  es: { one: '1 minuto', five: '5 minutos' },
  hi: { one: '1 मिनट', five: '5 मिनट' },
};

test('every locale renders the exact SMS: code first, brand, minutes, do-not-share', () => {
  for (const locale of LOCALES) {
    const sms = renderSms({ ...BASE, locale });
    assert.equal(sms, EXPECTED_SMS[locale], locale);
    assert.ok(sms.startsWith('123456 '), `${locale}: code first`);
    assert.ok(sms.includes('Acme'), `${locale}: brand`);
    assert.ok(sms.includes(MINUTES_PHRASE[locale].five), `${locale}: minutes`);
    assert.match(sms, DO_NOT_SHARE[locale], `${locale}: do-not-share`);
  }
});

test('singular and plural minutes follow Intl.PluralRules', () => {
  for (const locale of LOCALES) {
    const one = renderSms({ ...BASE, locale, expiresInMinutes: 1 });
    const five = renderSms({ ...BASE, locale, expiresInMinutes: 5 });
    assert.ok(one.includes(MINUTES_PHRASE[locale].one), `${locale}: ${one}`);
    assert.ok(five.includes(MINUTES_PHRASE[locale].five), `${locale}: ${five}`);
  }
  assert.ok(!renderSms({ ...BASE, locale: 'en', expiresInMinutes: 1 }).includes('1 minutes'));
  assert.ok(renderSms({ ...BASE, locale: 'en', expiresInMinutes: 15 }).includes('15 minutes'));
  assert.ok(renderEmail({ ...BASE, locale: 'pt-BR', expiresInMinutes: 1 }).text.includes('expira em 1 minuto.'));
});

test('SMS lengths: Latin locales fit one GSM-7 segment, Hindi at most two UCS-2 segments', () => {
  for (const locale of LOCALES) {
    const sms = renderSms({ ...BASE, locale });
    assert.deepEqual(smsSize(sms), MEASURED[locale], locale);
    assert.deepEqual(measureSms(sms), MEASURED[locale], `${locale}: module agrees with the test`);
  }
  // Longest brand the policy accepts is 40; the brief asks for one segment up to 20.
  for (const brand of ['A'.repeat(20), 'B'.repeat(40)]) {
    for (const locale of LOCALES) {
      const size = smsSize(renderSms({ ...BASE, locale, brand, code: '1234567890', expiresInMinutes: 15 }));
      if (locale === 'hi') {
        assert.equal(size.encoding, 'UCS-2');
        assert.ok(size.segments <= 2, `hi with ${brand.length}-char brand: ${size.units} units`);
      } else {
        assert.deepEqual([size.encoding, size.segments], ['GSM-7', 1], `${locale} with ${brand.length}-char brand`);
      }
    }
  }
  // Hindi stays one segment for short brands.
  assert.equal(smsSize(renderSms({ ...BASE, locale: 'hi', brand: 'Acmecorp' })).segments, 1);
});

test('folding keeps correct spelling when it would not save a segment', () => {
  // A Latin text already outside GSM-7 is folded; unfoldable scripts are left alone.
  assert.equal(foldToGsm7('código não ação — “ok”'), 'codigo nao acao - "ok"');
  assert.equal(foldToGsm7('नमस्ते'), undefined);
  // Brand outside GSM-7 in English: folding saves a segment, so it happens.
  const skoda = renderSms({ ...BASE, locale: 'en', brand: 'Škoda' });
  assert.ok(skoda.includes('Skoda'));
  assert.equal(smsSize(skoda).encoding, 'GSM-7');
  // A Hindi SMS with a Latin-accented brand keeps the brand as written.
  assert.ok(renderSms({ ...BASE, locale: 'hi', brand: 'Açaí' }).includes('Açaí'));
  // Split-avoidance: 152 septets + one extension character cannot share the first part.
  assert.equal(measureSms('a'.repeat(152) + '€' + 'a'.repeat(10)).segments, 2);
  assert.equal(measureSms('a'.repeat(160)).segments, 1);
  assert.equal(measureSms('a'.repeat(161)).segments, 2);
});

test('email: subject, text and html carry code, brand, expiry, do-not-share and the ignore line', () => {
  const ignore: Record<Locale, string> = {
    en: 'If you did not request this code, you can ignore this email.',
    id: 'Jika Anda tidak meminta kode ini, Anda dapat mengabaikan email ini.',
    'pt-BR': 'Se você não solicitou este código, pode ignorar este e-mail.',
    es: 'Si no solicitaste este código, puedes ignorar este correo.',
    hi: 'यदि आपने इस कोड का अनुरोध नहीं किया है, तो आप इस ईमेल को अनदेखा कर सकते हैं।',
  };
  for (const locale of LOCALES) {
    const email = renderEmail({ ...BASE, locale });
    assert.ok(email.subject.includes('123456') && email.subject.includes('Acme'), `${locale}: ${email.subject}`);
    for (const body of [email.text, email.html]) {
      assert.ok(body.includes('123456'), `${locale}: code`);
      assert.ok(body.includes('Acme'), `${locale}: brand`);
      assert.ok(body.includes(MINUTES_PHRASE[locale].five), `${locale}: minutes`);
      assert.match(body, DO_NOT_SHARE[locale], `${locale}: do-not-share`);
      assert.ok(body.includes(ignore[locale]), `${locale}: ignore line`);
    }
    assert.ok(email.html.startsWith('<!DOCTYPE html>'));
    assert.ok(email.html.includes(`<html lang="${locale}"`), `${locale}: lang attribute`);
    assert.match(email.html, /<meta charset="utf-8">/);
    assert.match(email.html, /<title>[^<]*123456[^<]*<\/title>/);
    assert.match(email.html, /font-family:ui-monospace[^"]*font-size:32px[^"]*">123456<\/p>/, `${locale}: big monospace code`);
    // Self-contained: no stylesheet, script, remote image or link.
    assert.doesNotMatch(email.html, /<style|<link|<script|<img|src=|https?:\/\//i);
    assert.ok(!email.text.includes('<'), `${locale}: text has no markup`);
  }
  assert.equal(renderEmail({ ...BASE, locale: 'en' }).subject, '123456 is your Acme verification code');
  // Email keeps full orthography even though SMS is folded.
  assert.equal(renderEmail({ ...BASE, locale: 'pt-BR' }).subject, '123456 é o seu código de verificação Acme');
});

test('a hostile brand is escaped in html and cannot inject lines or headers', () => {
  const brand = '<script>alert("x")</script>&\'';
  const email = renderEmail({ ...BASE, locale: 'en', brand });
  assert.ok(!email.html.includes('<script>'), 'no raw script tag');
  assert.ok(!email.html.includes('alert("x")'), 'quotes escaped');
  assert.ok(email.html.includes('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;'));
  // The plain-text parts are not HTML, so they carry the brand verbatim.
  assert.ok(email.subject.includes(brand));
  assert.ok(renderSms({ ...BASE, locale: 'en', brand }).includes(brand));

  const injected = renderEmail({ ...BASE, locale: 'en', brand: 'Acme\r\nBcc: victim@example.com\u202E' });
  assert.ok(!/[\r\n\u202E]/.test(injected.subject), 'no CR/LF or bidi override in subject');
  assert.equal(injected.subject, '123456 is your Acme Bcc: victim@example.com verification code');
  assert.ok(!renderSms({ ...BASE, locale: 'en', brand: 'Acme\nCall +1 555' }).includes('\n'));
});

test('invalid inputs are rejected without echoing the code', () => {
  const bad = [
    { ...BASE, locale: 'en' as const, code: '12a456' },
    { ...BASE, locale: 'en' as const, code: '123' },
    { ...BASE, locale: 'en' as const, expiresInMinutes: 0 },
    { ...BASE, locale: 'en' as const, expiresInMinutes: 2.5 },
    { ...BASE, locale: 'en' as const, brand: ' \n\t ' },
    { ...BASE, locale: 'fr' as Locale },
  ];
  for (const input of bad) {
    assert.throws(
      () => renderSms(input),
      (error: unknown) => error instanceof RangeError && !error.message.includes(input.code),
      JSON.stringify(input),
    );
  }
});

test('resolveLocale: request tag, then country, then fallback', () => {
  const policy = { locales: DEFAULT_POLICY.locales };
  const table: Array<[string | undefined, string | undefined, Locale]> = [
    ['pt-BR', undefined, 'pt-BR'],
    ['pt_br', undefined, 'pt-BR'],
    ['PT', undefined, 'pt-BR'],
    ['pt-PT', undefined, 'pt-BR'],
    ['pt_BR.UTF-8', undefined, 'pt-BR'],
    ['id-ID', undefined, 'id'],
    ['in', undefined, 'id'],
    ['es-MX', undefined, 'es'],
    ['es-419', undefined, 'es'],
    ['hi-IN', undefined, 'hi'],
    ['en-GB', 'BR', 'en'],
    [' EN-us ', undefined, 'en'],
    ['fr', 'BR', 'pt-BR'],
    ['fr-FR', undefined, 'en'],
    ['', 'id', 'id'],
    ['*', 'IN', 'hi'],
    ['not a tag', 'MX', 'es'],
    [undefined, 'ID', 'id'],
    [undefined, 'us', 'en'],
    [undefined, 'constructor', 'en'],
    [undefined, undefined, 'en'],
  ];
  for (const [requested, country, expected] of table) {
    assert.equal(resolveLocale(requested, country, policy), expected, `${String(requested)} / ${String(country)}`);
  }
  const custom = { locales: { fallback: 'es' as const, byCountry: { US: 'es' as const } } };
  assert.equal(resolveLocale(undefined, 'US', custom), 'es');
  assert.equal(resolveLocale('xx', 'FR', custom), 'es');
});

test('isSupportedLocaleTag matches exactly the tags resolveLocale maps itself', () => {
  for (const tag of ['en', 'en-GB', 'pt', 'pt_br', 'in', 'id-ID', 'es-419', 'hi-IN', 'ES']) {
    assert.equal(isSupportedLocaleTag(tag), true, tag);
  }
  for (const tag of ['fr', 'zh-Hant-TW', '', 'english', 'e', '__proto__', 'pt--BR']) {
    assert.equal(isSupportedLocaleTag(tag), false, tag);
  }
});

test('minutesUntil rounds down after a short grace and never says less than 1', () => {
  const now = 1_700_000_000_000;
  const cases: Array<[number, number]> = [
    [300_000, 5], // fresh 5-minute code
    [292_000, 5], // picked up 8 s late: still the configured TTL
    [289_000, 4], // 4 min 49 s left: no longer promise 5
    [250_000, 4], // 4 min 10 s
    [270_000, 4], // SMS fallback after a 30 s delivery timeout
    [60_000, 1],
    [20_000, 1],
    [0, 1],
    [-5_000, 1],
    [900_000, 15],
  ];
  for (const [remaining, expected] of cases) {
    assert.equal(minutesUntil(now + remaining, now), expected, `${remaining} ms`);
  }
  assert.throws(() => minutesUntil(Number.NaN, now), RangeError);
});
