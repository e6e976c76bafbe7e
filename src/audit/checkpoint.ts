import { createHmac, timingSafeEqual } from 'node:crypto';
import { encodeFields } from '../crypto/aead.js';
import type { ChainLink } from './chain.js';

/**
 * A chain head written outside the database (the vault's log), signed under the audit key: whoever rewinds a
 * chain in the database, events and head alike, cannot rewind the checkpoints already shipped with the logs, and
 * `phonevault audit verify --checkpoints` then finds the chain short of one.
 */
export interface Checkpoint extends ChainLink {
  tenant: string;
}

export const CHECKPOINT_MESSAGE = 'audit checkpoint';

const mac = (key: Buffer, checkpoint: Checkpoint) =>
  createHmac('sha256', key)
    .update(encodeFields(['phonevault:audit-checkpoint:v1', checkpoint.tenant, String(checkpoint.seq), checkpoint.hash]))
    .digest();

/** The fields of a checkpoint's log line. */
export function checkpointFields(key: Buffer, checkpoint: Checkpoint) {
  return { tenant: checkpoint.tenant, seq: checkpoint.seq, hash: checkpoint.hash.toString('hex'), mac: mac(key, checkpoint).toString('hex') };
}

export interface CheckpointsRead {
  /**
   * Every authentic checkpoint of each tenant, by seq ascending. Each one is checked, not only the latest: a chain
   * rewound and written on past its last checkpoint reaches that seq again, but with other hashes on the way.
   */
  byTenant: Map<string, Checkpoint[]>;
  /** Checkpoint lines whose signature does not hold (forged, or signed under another key). */
  forged: number;
}

/** Reads checkpoints from log text (JSON lines, other lines ignored); repeats of one checkpoint count once. */
export function readCheckpoints(key: Buffer, text: string): CheckpointsRead {
  const byTenant = new Map<string, Checkpoint[]>();
  const seen = new Set<string>();
  let forged = 0;
  for (const line of text.split('\n')) {
    if (!line.includes(CHECKPOINT_MESSAGE)) continue;
    let fields: Record<string, unknown>;
    try {
      fields = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    const { msg, tenant, seq, hash, mac: signature } = fields;
    if (msg !== CHECKPOINT_MESSAGE) continue;
    if (typeof tenant !== 'string' || !Number.isSafeInteger(seq) || typeof hash !== 'string' || typeof signature !== 'string' || !/^[0-9a-f]{64}$/.test(hash) || !/^[0-9a-f]{64}$/.test(signature)) {
      forged++;
      continue;
    }
    const checkpoint = { tenant, seq: seq as number, hash: Buffer.from(hash, 'hex') };
    if (!timingSafeEqual(mac(key, checkpoint), Buffer.from(signature, 'hex'))) {
      forged++;
      continue;
    }
    const id = `${tenant.length}:${tenant}:${checkpoint.seq}:${hash}`;
    if (seen.has(id)) continue;
    seen.add(id);
    let list = byTenant.get(tenant);
    if (!list) byTenant.set(tenant, (list = []));
    list.push(checkpoint);
  }
  for (const list of byTenant.values()) list.sort((a, b) => a.seq - b.seq);
  return { byTenant, forged };
}
