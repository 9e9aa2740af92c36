package volume

import (
	"reflect"
	"testing"
)

func TestParseQgroups(t *testing.T) {
	out := []byte(`Qgroupid    Referenced    Exclusive   Path 
--------    ----------    ---------   ---- 
0/5              16384        16384   <toplevel>
0/256            16384        16384   v/default/files
0/257         20017152     20017152   s/default/files/s1
0/258         20017152        16384   s/default/files/s2
1/100         20017152        16384   
`)
	got, err := parseQgroups(out, map[string]string{"0/257": "s1", "0/258": "s2", "0/999": "gone"})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int64{"s1": 20017152, "s2": 16384}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if _, err := parseQgroups([]byte("0/257 1 x s1\n"), map[string]string{"0/257": "s1"}); err == nil {
		t.Fatal("a bad number passes")
	}
}
