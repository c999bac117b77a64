package tlsrecord

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"fmt"
	"hash"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/hkdf"
)

// maxSecretLen is the longest traffic secret of the three suites (SHA-384).
const maxSecretLen = 48

// ivLen is the per-record nonce length of every TLS 1.3 AEAD (RFC 8446 §5.3).
const ivLen = 12

// suite is what the record layer needs to know about one TLS 1.3 cipher
// suite: its hash (for HKDF) and how to build its AEAD from a key.
type suite struct {
	id      uint16
	keyLen  int
	hash    func() hash.Hash
	hashLen int
	aead    func(key []byte) (cipher.AEAD, error)
}

func newAESGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

var suites = [...]suite{
	{tls.TLS_AES_128_GCM_SHA256, 16, sha256.New, sha256.Size, newAESGCM},
	{tls.TLS_AES_256_GCM_SHA384, 32, sha512.New384, sha512.Size384, newAESGCM},
	{tls.TLS_CHACHA20_POLY1305_SHA256, chacha20poly1305.KeySize, sha256.New, sha256.Size, chacha20poly1305.New},
}

func suiteByID(id uint16) (*suite, error) {
	for i := range suites {
		if suites[i].id == id {
			return &suites[i], nil
		}
	}
	return nil, fmt.Errorf("tlsrecord: cipher suite %#04x (%s) is not a TLS 1.3 suite this package supports", id, tls.CipherSuiteName(id))
}

func (s *suite) checkSecret(secret []byte) error {
	if len(secret) != s.hashLen {
		return fmt.Errorf("tlsrecord: %s traffic secret is %d bytes, want %d", tls.CipherSuiteName(s.id), len(secret), s.hashLen)
	}
	return nil
}

// ExpandLabel is HKDF-Expand-Label from RFC 8446 §7.1: HKDF-Expand over
// secret with the HkdfLabel structure (length, "tls13 "+label, context)
// as info. It panics if label or context is too long for the structure,
// which is a programming error, not a run-time condition.
func ExpandLabel(h func() hash.Hash, secret []byte, label string, context []byte, length int) []byte {
	const prefix = "tls13 "
	if len(prefix)+len(label) > 255 || len(context) > 255 || length > 0xffff {
		panic("tlsrecord: HKDF-Expand-Label input too long")
	}
	info := make([]byte, 0, 2+1+len(prefix)+len(label)+1+len(context))
	info = append(info, byte(length>>8), byte(length))
	info = append(info, byte(len(prefix)+len(label)))
	info = append(info, prefix...)
	info = append(info, label...)
	info = append(info, byte(len(context)))
	info = append(info, context...)
	out := make([]byte, length)
	// hkdf.Expand fails only when asked for more than 255 hash lengths,
	// which no TLS 1.3 label does.
	if _, err := hkdf.Expand(h, secret, info).Read(out); err != nil {
		panic("tlsrecord: HKDF-Expand: " + err.Error())
	}
	return out
}

// TrafficKey derives the write key and IV of a traffic secret for the
// given suite (RFC 8446 §7.3).
func TrafficKey(suiteID uint16, secret []byte) (key, iv []byte, err error) {
	s, err := suiteByID(suiteID)
	if err != nil {
		return nil, nil, err
	}
	if err := s.checkSecret(secret); err != nil {
		return nil, nil, err
	}
	key = ExpandLabel(s.hash, secret, "key", nil, s.keyLen)
	iv = ExpandLabel(s.hash, secret, "iv", nil, ivLen)
	return key, iv, nil
}

// NextTrafficSecret derives application_traffic_secret_N+1 from
// application_traffic_secret_N, the step a KeyUpdate takes (RFC 8446 §7.2).
func NextTrafficSecret(suiteID uint16, secret []byte) ([]byte, error) {
	s, err := suiteByID(suiteID)
	if err != nil {
		return nil, err
	}
	if err := s.checkSecret(secret); err != nil {
		return nil, err
	}
	return ExpandLabel(s.hash, secret, "traffic upd", nil, s.hashLen), nil
}
