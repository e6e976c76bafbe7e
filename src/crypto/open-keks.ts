import type { Logger } from 'pino';
import type { KekConfig } from '../config/kek.js';
import { KekSet, type Kek } from './kek.js';
import { envKek } from './master-keys.js';

/**
 * The configured KEKs, in KEK_PROVIDER's order (the first provider's first key is active). The PKCS#11 binding
 * and the AWS SDK are loaded only when a provider needs them. A provider that cannot be opened stops start-up
 * (KekSetupError).
 */
export async function openKeks(config: KekConfig, logger?: Logger): Promise<KekSet> {
  const keks: Kek[] = [];
  try {
    for (const provider of config.providers) {
      if (provider === 'env') keks.push(...config.masterKeys.map(envKek));
      else if (provider === 'pkcs11') {
        const { Pkcs11Kek } = await import('./pkcs11-kek.js');
        keks.push(await Pkcs11Kek.open(config.pkcs11!, logger));
      } else {
        const { AwsKmsKek } = await import('./awskms-kek.js');
        keks.push(await AwsKmsKek.open(config.awskms!, logger));
      }
    }
    return new KekSet(keks);
  } catch (error) {
    for (const kek of keks) await kek.close();
    throw error;
  }
}
