-- wrk script: POST /echo with a JSON body of exactly ECHO_BODY_BYTES bytes (default 1024,
-- i.e. 1 KiB). The server parses the document and writes it back, so this measures request
-- body reading, JSON parsing and JSON serialisation together.
local size = tonumber(os.getenv("ECHO_BODY_BYTES") or "1024")
local path = os.getenv("ECHO_PATH") or "/echo"

-- A small realistic object, padded with a "note" string up to `size` bytes in total.
local head = '{"id":42,"name":"Ada Lovelace","email":"ada@example.com","active":true,'
  .. '"roles":["admin","dev"],"score":98.5,"note":"'
local tail = '"}'
local pad = size - #head - #tail
if pad < 0 then pad = 0 end
local body = head .. string.rep("x", pad) .. tail

wrk.method = "POST"
wrk.path = path
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
