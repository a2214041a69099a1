"""Images resized for the device: the ladder of widths, presets, format negotiation, signed
URLs, limits against hostile originals, and the Pillow pipeline that renders a derivative.

Pillow is imported by `imaging` only, and `service` imports that module on the first render
or probe: a process that never resizes an image never loads the imaging library.
"""
