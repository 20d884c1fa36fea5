package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/hashicorp/vault/api"
)

// KeyVersions is what Transit says of a key's versions.
type KeyVersions struct {
	Latest        int // the version that encrypts
	MinDecryption int // older versions do not decrypt (config min_decryption_version)
	MinEncryption int // 0: the latest
	MinAvailable  int // older versions are deleted (trim); 0 or 1: none trimmed
}

// Versions reads the versions of the Transit key keyName.
func (k *KMS) Versions(ctx context.Context, keyName string) (KeyVersions, error) {
	path := k.mount + "/keys/" + keyName
	s, err := k.do(ctx, func() (*api.Secret, error) { return k.client.Logical().ReadWithContext(ctx, path) })
	if err != nil {
		return KeyVersions{}, k.errorf("read key", keyName, err)
	}
	if s == nil || s.Data == nil {
		return KeyVersions{}, k.errorf("read key", keyName, errors.New("no such Transit key"))
	}
	var v KeyVersions
	for _, f := range []struct {
		name string
		dst  *int
	}{{"latest_version", &v.Latest}, {"min_decryption_version", &v.MinDecryption}, {"min_encryption_version", &v.MinEncryption}, {"min_available_version", &v.MinAvailable}} {
		n, ok := s.Data[f.name].(json.Number)
		if !ok {
			continue // min_available_version is absent until a trim
		}
		i, err := n.Int64()
		if err != nil {
			return KeyVersions{}, k.errorf("read key", keyName, fmt.Errorf("%s: %v", f.name, err))
		}
		*f.dst = int(i)
	}
	if v.Latest == 0 {
		return KeyVersions{}, k.errorf("read key", keyName, errors.New("answer has no latest_version"))
	}
	return v, nil
}

// RotateKey makes a new version of the Transit key keyName, which wraps from
// then on, and returns it.
func (k *KMS) RotateKey(ctx context.Context, keyName string) (int, error) {
	path := k.mount + "/keys/" + keyName + "/rotate"
	if _, err := k.do(ctx, func() (*api.Secret, error) { return k.client.Logical().WriteWithContext(ctx, path, nil) }); err != nil {
		return 0, k.errorf("rotate key", keyName, err)
	}
	v, err := k.Versions(ctx, keyName)
	return v.Latest, err
}

// Retire makes the versions of keyName below min unusable, then deletes
// them: min_decryption_version and min_encryption_version are set to min,
// then the key is trimmed to it. What they wrapped can never be unwrapped
// again, by anyone: this is how pgcloak makes old backups lose their
// subject keys. Versions already retired are not touched (it never lowers
// a minimum).
func (k *KMS) Retire(ctx context.Context, keyName string, min int) error {
	v, err := k.Versions(ctx, keyName)
	if err != nil {
		return err
	}
	if min > v.Latest {
		return k.errorf("retire versions", keyName, fmt.Errorf("version %d is newer than the latest, %d", min, v.Latest))
	}
	if v.MinDecryption < min || v.MinEncryption < min {
		body := map[string]any{"min_decryption_version": max(min, v.MinDecryption), "min_encryption_version": max(min, v.MinEncryption)}
		path := k.mount + "/keys/" + keyName + "/config"
		if _, err := k.do(ctx, func() (*api.Secret, error) { return k.client.Logical().WriteWithContext(ctx, path, body) }); err != nil {
			return k.errorf("set min_decryption_version", keyName, err)
		}
	}
	if v.MinAvailable < min {
		path := k.mount + "/keys/" + keyName + "/trim"
		body := map[string]any{"min_available_version": min}
		if _, err := k.do(ctx, func() (*api.Secret, error) { return k.client.Logical().WriteWithContext(ctx, path, body) }); err != nil {
			return k.errorf("trim", keyName, err)
		}
	}
	return nil
}
