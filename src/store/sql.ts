import type { Queryable } from './db.js';

/**
 * A statement written with named parameters (`:name`), numbered once into `$n`, so that a statement made of parts
 * (the audit append's CTEs beside a read or an insert) reads by name and no part counts another's parameters.
 */
export interface Statement<Names extends string = string> {
  text: string;
  names: Names[];
}

// `:name`, but not the second colon of a `::type` cast.
const PARAMETER = /(?<![:\w]):([a-z][a-z0-9_]*)/g;

export function statement<Names extends string = string>(text: string): Statement<Names> {
  const names: Names[] = [];
  const numbered = text.replace(PARAMETER, (_match, name: Names) => {
    let index = names.indexOf(name);
    if (index === -1) index = names.push(name) - 1;
    return `$${index + 1}`;
  });
  return { text: numbered, names };
}

/** The statement's values in parameter order; a name without a value is a bug, said at once. */
export function bind<Names extends string>(compiled: Statement<Names>, values: Record<Names, unknown>): unknown[] {
  return compiled.names.map((name) => {
    if (!(name in values)) throw new Error(`no value for :${name}`);
    return values[name];
  });
}

/**
 * Deletes in short statements that each name one tenant (one shard when distributed): `tenantsSql` ($1, the
 * limit) finds the tenants holding rows to go, and `deleteSql` ($1, a tenant; $2, the limit) deletes up to the
 * limit of that tenant's. For the sweeps.
 */
export async function deleteTenantByTenant(q: Queryable, tenantsSql: string, deleteSql: string, limit: number): Promise<number> {
  const tenants = await q.query<{ tenant_id: string }>(tenantsSql, [limit]);
  let deleted = 0;
  for (const { tenant_id: tenant } of tenants.rows) deleted += (await q.query(deleteSql, [tenant, limit])).rowCount;
  return deleted;
}
