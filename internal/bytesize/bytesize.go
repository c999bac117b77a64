// Package bytesize reads and writes byte counts the way ringrelay's flags,
// logs and reports spell them: a plain number of bytes, or a whole number
// of KiB, MiB or GiB.
package bytesize

import (
	"fmt"
	"strconv"
	"strings"
)

// Max is the largest size Parse accepts (1 TiB): far above any limit the
// relay has, small enough that no product of two sizes overflows an int64.
const Max = 1 << 40

var units = []struct {
	suffix string
	mult   int64
}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}

// Format writes n with the largest binary unit that divides it exactly:
// 16KiB, 1MiB, 1500B.
func Format(n int64) string {
	for _, u := range units {
		if n >= u.mult && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// Parse reads a size written as bytes ("4096", "4096B") or with a KiB, MiB
// or GiB suffix ("4KiB", "1 MiB"). Negative sizes, fractions and sizes over
// Max are errors.
func Parse(s string) (int64, error) {
	num, mult := s, int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil || n < 0 || n > Max/mult {
		return 0, fmt.Errorf("%q is not a size: use bytes, or a whole number with KiB, MiB or GiB", s)
	}
	return n * mult, nil
}
