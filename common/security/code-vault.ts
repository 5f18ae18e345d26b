import { createCipheriv, createDecipheriv, createHmac, createSecretKey, hkdfSync, randomInt, type KeyObject } from 'node:crypto';
import { randomBuffer } from './random-pool.js';

/**
 * Everything Kurir does with a plaintext code lives here. Redis only ever sees
 * - `codeMac`: HMAC-SHA256 of `<verificationId>:<code>` (binding the id stops a MAC from one
 *   verification being replayed against another), compared by the check script;
 * - `codeSealed`: the code encrypted with AES-256-GCM, because a fallback or a resend must send
 *   the *same* code again later, possibly from another process. The verification id is the
 *   additional authenticated data, so a sealed code moved to another record does not open.
 * Both keys are derived from `KURIR_SECRET` with HKDF and separate labels, so one secret can
 * be configured without the two uses ever sharing a key.
 */
export interface CodeVault {
  generate(length: number): string;
  mac(verificationId: string, code: string): string;
  /**
   * The destination's MAC, which names its lockout, limit and no-WhatsApp keys (never the number
   * itself): one definition, because the API and the workers must name the same keys.
   */
  destinationMac(destination: string): string;
  seal(verificationId: string, code: string): string;
  open(verificationId: string, sealed: string): string;
}

const GCM_IV_BYTES = 12;
const GCM_TAG_BYTES = 16;

/** A key object rather than bytes: a MAC or cipher built on it does not import the key again on every call. */
function deriveKey(secret: string, label: string): KeyObject {
  return createSecretKey(Buffer.from(hkdfSync('sha256', Buffer.from(secret, 'utf8'), Buffer.alloc(0), `kurir/${label}/v1`, 32)));
}

/**
 * Uniform decimal digits from the OS CSPRNG (`randomInt` rejects modulo bias itself, and draws
 * from Node's own cache of random bytes, so a digit costs no crypto call of its own).
 */
export function generateCode(length: number): string {
  if (!Number.isInteger(length) || length < 4 || length > 10) throw new RangeError('code length must be 4–10');
  let code = '';
  for (let i = 0; i < length; i += 1) code += String(randomInt(10));
  return code;
}

export function createCodeVault(secret: string): CodeVault {
  const macKey = deriveKey(secret, 'code-mac');
  const sealKey = deriveKey(secret, 'code-seal');
  const mac = (verificationId: string, code: string) => createHmac('sha256', macKey).update(`${verificationId}:${code}`).digest('base64url');
  return {
    generate: generateCode,
    mac,
    destinationMac: (destination) => mac('destination', destination),
    seal(verificationId, code) {
      // Random but not secret (it is stored beside the ciphertext), so the shared pool may supply it.
      const iv = randomBuffer(GCM_IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', sealKey, iv);
      cipher.setAAD(Buffer.from(verificationId, 'utf8'));
      const body = Buffer.concat([cipher.update(code, 'utf8'), cipher.final()]);
      return Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64url');
    },
    open(verificationId, sealed) {
      const raw = Buffer.from(sealed, 'base64url');
      if (raw.length <= GCM_IV_BYTES + GCM_TAG_BYTES) throw new Error('sealed code is truncated');
      const iv = raw.subarray(0, GCM_IV_BYTES);
      const tag = raw.subarray(raw.length - GCM_TAG_BYTES);
      const body = raw.subarray(GCM_IV_BYTES, raw.length - GCM_TAG_BYTES);
      const decipher = createDecipheriv('aes-256-gcm', sealKey, iv);
      decipher.setAAD(Buffer.from(verificationId, 'utf8'));
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(body), decipher.final()]).toString('utf8');
    },
  };
}
