-- wrk script: every request carries the next forged key from the file named
-- by FORGED (one key per line, `cargo run --release --example forged_keys`),
-- each thread starting at a different offset.
local keys = {}
local i = 0

function init(args)
  for line in io.lines(os.getenv("FORGED") or "/tmp/forged.txt") do
    keys[#keys + 1] = line
  end
  i = math.random(#keys)
end

function request()
  i = i % #keys + 1
  return wrk.format("GET", "/v1/authorize", { ["Authorization"] = "Api-Key " .. keys[i] })
end
