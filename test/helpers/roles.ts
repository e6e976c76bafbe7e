/** The role the tests run the vault as: a member of phonevault_app, holding only the grants SECURITY.md recommends. */
export const VAULT_ROLE = 'phonevault_test_vault';

/** The same database, logged into as the vault's serving role. */
export function asVaultRole(url: string): string {
  const parsed = new URL(url);
  parsed.username = VAULT_ROLE;
  parsed.password = '';
  return parsed.toString();
}
