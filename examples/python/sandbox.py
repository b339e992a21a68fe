# The seed's sandbox example, as written.  Run: python3 examples/python/sandbox.py
from beam import Image, Sandbox


sandbox = Sandbox(image=Image()).create()
response = sandbox.process.run_code("print('I am running remotely')")

print(response.result)
