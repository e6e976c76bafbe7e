// A worker thread of src/vault/offload.ts: pure computation over what each task brings, nothing kept between tasks.
import { openRows, prepareRows } from './bulk.js';
import { asBuffer, pack, packOpened, unpack, type OpenTask, type PrepareResult, type PrepareTask } from './offload-protocol.js';

export function prepare(task: PrepareTask): PrepareResult {
  const { slots, rows } = prepareRows(
    task.tenant,
    task.inputs,
    { version: task.version, key: asBuffer(task.key), fingerprintKey: asBuffer(task.fingerprintKey) },
    task.minting,
  );
  const tokenIds = pack(rows.map((row) => row.tokenId));
  const envelopes = pack(rows.map((row) => row.envelope));
  const fingerprints = pack(rows.map((row) => row.fingerprint));
  return {
    slots,
    e164: rows.map((row) => row.e164),
    country: rows.map((row) => row.country),
    lineType: rows.map((row) => row.lineType),
    tokenIds: tokenIds.data,
    tokenIdEnds: tokenIds.ends,
    envelopes: envelopes.data,
    envelopeEnds: envelopes.ends,
    fingerprints: fingerprints.data,
    fingerprintEnds: fingerprints.ends,
  };
}

export function open(task: OpenTask): string {
  const tokenIds = unpack(task.tokenIds, task.tokenIdEnds);
  const envelopes = unpack(task.envelopes, task.envelopeEnds);
  const fingerprints = unpack(task.fingerprints, task.fingerprintEnds);
  const keys = new Map(task.keys.map(([version, key]) => [version, asBuffer(key)]));
  return packOpened(
    openRows(
      task.tenant,
      keys,
      Array.from(task.keyVersions, (keyVersion, i) => ({ tokenId: tokenIds[i]!, keyVersion, envelope: envelopes[i]!, fingerprint: fingerprints[i]! })),
    ),
  );
}
