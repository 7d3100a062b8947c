; The supervised pool of README.md ("Worked example: a supervised pool"),
; for the kernel: cargo run -q --bin erlangen-kernel -- -n -b < examples/pool.lisp
; tests/readme_pool.rs runs it and compares with the README's transcript.
(setq pool (start-supervisor :strategy :one-for-one :intensity 3 :period 5 :children '((w1 (pool-worker)) (w2 (pool-worker) :permanent :name :w2) (w3 (pool-worker) :transient))))
(which-children pool)
(request :w2 7)
(request (second (first (which-children pool))) :crash)
(mapcar (lambda (c) (request (second c) 6)) (which-children pool))
(which-children pool)
(setq t1 (send-after 50 :tick (agent)))
(cancel-timer (send-after 100000 :never (agent)))
(receive :timeout 5)
(cancel-timer t1)
(link pool :monitor)
(exit :stop pool)
(receive :timeout 5)
(request :w2 1)
