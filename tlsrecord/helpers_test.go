package tlsrecord

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"golang.org/x/crypto/hkdf"
)

func errorsAs(err error, target any) bool { return errors.As(err, target) }

// hkdfExpandRaw is plain HKDF-Expand (SHA-256) with caller-given info, to
// check ExpandLabel's info encoding against the RFC's printed bytes.
func hkdfExpandRaw(secret, info []byte, n int) []byte {
	out := make([]byte, n)
	if _, err := hkdf.Expand(sha256.New, secret, info).Read(out); err != nil {
		panic(err)
	}
	return out
}

func hexString(b []byte) string { return hex.EncodeToString(b) }

func timeNowPlus() time.Time { return time.Now().Add(testDeadline) }
