;; A guest with a realistic, expensive initialisation: `init` grows memory by
;; 16 MiB and fills it with a 4 Mi-entry lookup table of mixed hashes (eight
;; rounds of a multiply-xorshift mix per entry). `lookup` then answers from the
;; table. The table's base address lives in a NON-exported mutable global, as
;; compiler-generated state (a stack pointer, a heap top) usually does.
(module
  (memory (export "memory") 1)
  (global $table_base (mut i32) (i32.const 0))
  (global $entries i32 (i32.const 4194304))

  (func $mix (param $x i32) (result i32)
    (local $round i32)
    (loop $rounds
      (local.set $x (i32.mul (i32.xor (local.get $x) (i32.shr_u (local.get $x) (i32.const 16)))
                             (i32.const 0x45d9f3b)))
      (local.set $round (i32.add (local.get $round) (i32.const 1)))
      (br_if $rounds (i32.lt_u (local.get $round) (i32.const 8))))
    (local.get $x))

  (func (export "init")
    (local $i i32) (local $base i32)
    (if (i32.ne (global.get $table_base) (i32.const 0)) (then (return)))
    (local.set $base (i32.mul (memory.grow (i32.const 256)) (i32.const 65536)))
    (loop $fill
      (i32.store
        (i32.add (local.get $base) (i32.shl (local.get $i) (i32.const 2)))
        (call $mix (i32.add (local.get $i) (i32.const 1))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $fill (i32.lt_u (local.get $i) (global.get $entries))))
    (global.set $table_base (local.get $base)))

  ;; Returns the table entry for `key`, or -1 when `init` has not run.
  (func (export "lookup") (param $key i32) (result i32)
    (if (i32.eqz (global.get $table_base)) (then (return (i32.const -1))))
    (i32.load
      (i32.add (global.get $table_base)
               (i32.shl (i32.and (local.get $key) (i32.const 4194303)) (i32.const 2)))))
)
