/**
 * The hash tag of a tenant's send-decision state: its send limits, its pumping guard and its daily
 * budgets all carry it, so every key one send decision reads or writes is in one Cluster slot
 * and the send gate decides a send in one script (send-gate.lua.ts).
 */
export function tenantHashTag(tenant: string): string {
  if (tenant === '' || /[{}]/.test(tenant)) throw new Error(`tenant "${tenant}" cannot be a hash tag`);
  return `{${tenant}}`;
}
