package types

// TenantUsage is what a tenant's pods use, as the store keeps it (store:
// /macro/usage/<tenant>), changed in the same transaction as every create,
// removal and change of a pod that changes it, so that a quota check reads
// one small record rather than every pod of the tenant.
type TenantUsage struct {
	// Pods counts the tenant's pods, running or not.
	Pods int `json:"pods"`
	// MemoryBytes sums the memory of the pods meant to run (MeantToRun):
	// what HoldsMemory counts, and also the pods that exited by
	// themselves that it does not count (a status alone never changes
	// this record). It is therefore never below the memory in use.
	MemoryBytes int64 `json:"memoryBytes"`
}
